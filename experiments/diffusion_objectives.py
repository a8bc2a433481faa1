"""Which training objective converges fastest: epsilon, x0 or v prediction, with and without min-SNR.

The same pixel-space U-Net of `ddpm_mnist` (its quick architecture: 2x2 pixel patches, channels
32/64) is trained on MNIST once per objective, from the same initial weights, data order and
noise keys, for the same number of steps:

- the network predicts the noise epsilon (Ho et al. 2020), the clean image x0, or the velocity
  v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022);
- the loss is that target's simple mean squared error (`genjax.diffusion.ddpm_loss`), or its
  min-SNR-gamma weighting (`genjax.diffusion.min_snr_loss`, Hang et al. 2023, gamma = 5: the
  per-timestep weight min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for x0 and
  min(SNR, gamma) / (SNR + 1) for v, which puts every parameterisation on the same x0-space
  weighting).

Every `eval_every` steps each run's EMA weights sample `num_samples` digits with one sampler
(`sampler` at `nfe` denoiser calls, x0 predictions clipped to [-1, 1]) and are scored with the
MNIST-feature FID (`experiments/_features.py`; the floor is the FID of as many real training
digits). The report has FID against training steps for every objective, a table of it, and for
each objective the first evaluated step at which it reaches the epsilon baseline's final FID:
Hang et al. report min-SNR weighting converging about 3.4x faster than the simple loss on
ImageNet 256 (their figure 1; ViT backbones).

Measured with the default config (500 samples per evaluation, floor 5.5; DPM-Solver++(2M) 20):

    FID at step          200    400    600    800   first step at epsilon's final FID
    epsilon / simple    199.4  111.7   76.8   60.1   800
    epsilon / min-SNR   162.3   83.7   57.3   48.1   600 (1.33x)
    x0 / simple          72.2   49.5   39.3   32.8   400 (2x)
    x0 / min-SNR         91.3   60.0   43.9   37.1   400 (2x)
    v / simple          125.6   73.5   54.7   46.3   600 (1.33x)
    v / min-SNR         102.2   55.9   42.6   35.9   400 (2x)

min-SNR weighting helped epsilon and v prediction (as Hang et al. report) and not x0 prediction,
which was the fastest objective of all at this budget: what a 20-step sampler needs from a
short training run is a good x0 estimate at high noise, which the x0 loss weights far more than
the epsilon loss (in x0 terms the epsilon loss is SNR(t) times the x0 loss). It took 35 minutes
on the 2-core CPU with other jobs beside it (from the idle step rate, 4 steps per second, about
4.5 minutes per objective alone);
`--quick` (300 steps, 200 samples, 3 evaluations) about a third of that. Not part of the tour:
`python -m experiments tour --only diffusion_objectives` runs it there.

    python -m experiments.diffusion_objectives [--quick] [--steps N] [--objectives epsilon/simple,v/min_snr]
"""

from __future__ import annotations

import dataclasses
import types
from typing import Literal

from experiments._diffusion_common import build_unet, check_samplers, sampler_fns, samples_figure, to_unit
from experiments._framework import Context, Experiment

PREDICTIONS = ("epsilon", "x0", "v")
WEIGHTINGS = ("simple", "min_snr")
BASELINE = "epsilon/simple"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    # "<prediction>/<weighting>": prediction in epsilon, x0, v; weighting in simple, min_snr
    objectives: tuple[str, ...] = ("epsilon/simple", "epsilon/min_snr", "x0/simple", "x0/min_snr", "v/simple",
                                   "v/min_snr")
    min_snr_gamma: float = 5.0
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    channels: tuple[int, ...] = (32, 64)
    num_res_blocks: int = 1
    time_dim: int = 32
    attention: bool = False
    patch_size: int = 2
    steps: int = 800
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    eval_every: int = 200  # training steps between evaluations
    num_samples: int = 500  # scored per evaluation (the floor: as many real digits)
    sample_batch: int = 500
    sampler: Literal["ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun"] = "dpmpp_2m"
    nfe: int = 20
    checkpoint_every: int = 400
    log_every: int = 50
    keep_checkpoints: int = 1
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"

    def __post_init__(self):  # checked before the workdir is written
        bad = [o for o in self.objectives if o.count("/") != 1 or o.split("/")[0] not in PREDICTIONS
               or o.split("/")[1] not in WEIGHTINGS]
        if bad:
            raise ValueError(f"--objectives: expected <prediction>/<weighting> with prediction in {list(PREDICTIONS)} "
                             f"and weighting in {list(WEIGHTINGS)}, got {bad}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"--objectives: each objective at most once, got {list(self.objectives)}")
        if self.steps % self.eval_every:
            raise ValueError(f"--steps ({self.steps}) must be a multiple of --eval-every ({self.eval_every})")
        if self.num_samples < 2:
            raise ValueError(f"--num-samples: expected >= 2 (FID needs two samples), got {self.num_samples}")
        check_samplers((self.sampler,), (self.nfe,), self.num_timesteps)


QUICK = {"steps": 300, "eval_every": 100, "num_samples": 200, "checkpoint_every": 300}


def objective_config(cfg: Config, objective: str):
    """The fields `build_unet` reads, for one objective."""
    prediction, weighting = objective.split("/")
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return types.SimpleNamespace(**fields, prediction=prediction, loss_weighting=weighting)


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose FID is <= `target` (None if none is)."""
    return next((step for step, fid in curve if fid <= target), None)


def run(ctx: Context) -> dict:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from experiments._diffusion_common import generate
    from experiments._features import fit_seconds, mnist_evaluator
    from genjax import data, metrics, report

    cfg: Config = ctx.config
    train_ds = data.load_images("mnist", "train", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"data: {train_ds.description}")
    evaluator = mnist_evaluator(ctx, data_source=cfg.data_source, data_dir=cfg.data_dir)
    floor = metrics.fid(evaluator.feature_fn(train_ds.images[: cfg.num_samples]), evaluator.reference_features)
    batch = min(cfg.sample_batch, cfg.num_samples)
    key = jax.random.key(cfg.seed)

    curves, finals, seconds, n_params = {}, {}, {}, None
    for objective in cfg.objectives:
        built = build_unet(objective_config(cfg, objective), lambda img: img.astype("float32") / 127.5 - 1.0,
                           "image", train_ds.image_shape)
        state = built.init(key)  # the same initial weights and run key for every objective
        n_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
        (fn, _), = sampler_fns(built.apply_fn, built.schedule, (batch, *train_ds.image_shape),
                               samplers=(cfg.sampler,), nfe=(cfg.nfe,), ddpm=False, clip_x0=(-1.0, 1.0),
                               prediction=objective.split("/")[0]).values()

        def eval_fn(state, fn=fn):
            x, _ = generate(fn, state.extras["ema_params"], jax.random.fold_in(key, 10_000), cfg.num_samples, batch)
            return {"fid": evaluator.fid(to_unit(x))}

        subdir = objective.replace("/", "_")
        loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                               process_index=jax.process_index(), process_count=jax.process_count())
        ctx.log(f"{objective}: {cfg.steps} steps, FID every {cfg.eval_every}")
        fit = ctx.fit(state, built.step, loader, subdir=subdir, eval_fn=eval_fn, eval_every=cfg.eval_every)
        by_step = {int(r["step"]): float(r["eval/fid"]) for r in report.read_jsonl(ctx.workdir / subdir / "metrics.jsonl")
                   if "eval/fid" in r}  # a resumed run's records too (the last one of each step)
        curves[objective] = sorted(by_step.items())
        x, _ = generate(fn, fit.state.extras["ema_params"], jax.random.fold_in(key, 10_000), batch, batch)
        finals[objective] = to_unit(x[:36])
        seconds[objective] = fit_seconds(fit, ctx.workdir / subdir / "metrics.jsonl")
        ctx.log(f"{objective}: FID " + ", ".join(f"{f:.1f} @ {s}" for s, f in curves[objective]))

    # ---------------------------------------------------------------- report
    rep = ctx.report
    rep.text(f"Data: {train_ds.description}. Model: `genjax.nn.UNet` (channels {tuple(cfg.channels)}, patch "
             f"{cfg.patch_size}, {n_params:,} parameters), {cfg.steps} steps of batch {cfg.batch_size} per objective "
             f"from the same initial weights, data order and noise keys; Adam (peak learning rate {cfg.learning_rate}, "
             f"warm-up {cfg.warmup_steps} steps, cosine decay), EMA {cfg.ema_decay}; T = {cfg.num_timesteps} "
             f"({cfg.schedule} betas), min-SNR gamma {cfg.min_snr_gamma}. Each evaluation: {cfg.num_samples} "
             f"samples of the EMA weights with {cfg.sampler} at {cfg.nfe} denoiser calls (x0 clipped to [-1, 1]), "
             f"MNIST-feature FID; floor ({cfg.num_samples} real training digits): {floor:.2f}.")
    baseline_final = curves[BASELINE][-1][1] if BASELINE in curves else None
    steps_axis = [s for s, _ in next(iter(curves.values()))]
    rows = []
    for objective, curve in curves.items():
        reach = steps_to_reach(curve, baseline_final) if baseline_final is not None else None
        speedup = cfg.steps / reach if reach else None
        rows.append((objective, *[f"{fid:.1f}" for _, fid in curve], reach if reach else "not reached",
                     f"{speedup:.2f}x" if speedup else "-", f"{seconds[objective]:.0f}"))
    rep.table(["objective", *[f"FID @ {s}" for s in steps_axis],
               f"first step at {BASELINE}'s final FID", "steps saved (x)", "train s"], rows,
              caption=f"MNIST-feature FID against training steps ({cfg.num_samples} samples, floor {floor:.2f}); "
                      f"'first step': the first evaluated step at which the objective's FID is at most the "
                      f"{BASELINE} baseline's FID after all {cfg.steps} steps; 'steps saved': {cfg.steps} / that "
                      "step (Hang et al. 2023 report about 3.4x for min-SNR on ImageNet 256)")

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (objective, curve) in enumerate(curves.items()):
        prediction, weighting = objective.split("/")
        ax.plot([s for s, _ in curve], [f for _, f in curve], "o-" if weighting == "simple" else "s--",
                color=f"C{PREDICTIONS.index(prediction)}", label=objective, ms=4)
    ax.axhline(floor, color="0.5", ls=":", label="real digits (floor)")
    ax.set_yscale("log")
    ax.set_xlabel("training steps")
    ax.set_ylabel("MNIST-feature FID")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    rep.figure(fig, "fid_vs_steps", caption="FID against training steps, per objective (colour: what the network "
                                            "predicts; dashed: min-SNR weighting)")
    plt.close(fig)
    samples_figure(rep, [(f"{o}\nFID {curves[o][-1][1]:.1f}", finals[o]) for o in curves],
                   f"36 samples of each objective after {cfg.steps} steps (the same start noise)", (2.3, 2.6))

    summary = {"floor_fid": floor, "num_parameters": n_params, "steps": cfg.steps}
    for objective, curve in curves.items():
        summary[f"{objective}/fid"] = {str(s): f for s, f in curve}
        summary[f"{objective}/final_fid"] = curve[-1][1]
        summary[f"{objective}/train_seconds"] = seconds[objective]
        if baseline_final is not None:
            summary[f"{objective}/steps_to_baseline_final"] = steps_to_reach(curve, baseline_final)
    return summary


EXPERIMENT = Experiment(
    name="diffusion_objectives",
    title="Diffusion training objectives: epsilon, x0 and v prediction, with and without min-SNR weighting",
    description="The pixel U-Net trained once per objective at equal steps: MNIST-feature FID against training steps.",
    config=Config,
    quick=QUICK,
    run=run,
    trains=True,
    evaluation_fields=frozenset({"num_samples", "sample_batch", "sampler", "nfe"}),
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
