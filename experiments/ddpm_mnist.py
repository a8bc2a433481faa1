"""DDPM on MNIST: the forward process of a digit, training a U-Net, DDPM vs DDIM sampling.

1. The forward-process strip: one digit pushed through q(x_t | x_0) at t = 0, 100, ..., 900, 999
   for the linear schedule of Ho et al. (2020) and the cosine schedule of Nichol & Dhariwal
   (2021) (the same noise in both rows: the cosine schedule destroys the digit more gradually).
2. Training: `genjax.nn.UNet` (a small DDPM U-Net, 28 -> 14 -> 7) with `genjax.diffusion.ddpm_loss`
   on images scaled to [-1, 1], Adam with warm-up and gradient clipping, EMA of the weights.
3. Sampling with the EMA weights: ancestral DDPM with all T = 1000 steps, and DDIM (eta = 0) with
   100, 50, 20 and 10 steps, each the whole chain in one `lax.scan`, predicted x_0 clipped to
   [-1, 1] as in Ho et al.'s code (DDIM then recomputes the noise from the clipped x_0, as
   guided-diffusion does). Quality is the MNIST-feature FID and KID
   (`experiments/_features.py`: features of the runtime's trained classifier, against the 1,000
   held-out digits; the FID of 1,000 real training digits is the floor), speed is seconds per
   1,000 samples (one compiled sampler per method, compiled ahead of time, then timed with
   `block_until_ready`).

With `--learned-variance true` (Nichol & Dhariwal 2021) the U-Net also outputs v, the weight
of eq. (15) between log beta_t and log tilde-beta_t, trained by the hybrid loss L_simple +
`--vlb-weight` (0.001) x T x L_t (`genjax.diffusion.hybrid_loss`), and "iDDPM n" samples
ancestrally with the learned variances on n strided timesteps at every `--nfe` budget
(`genjax.diffusion.learned_variance_sample`); the fixed-variance samplers use the first output.

The same number of samples is scored for every sampler, so their FIDs are comparable with each
other; FID is biased upward for small sample counts (`--quick` scores only 64), KID is not.
`samples.npy` holds the DDPM samples, float32 [num_samples, 28, 28, 1] in [0, 1]; the EMA
weights are saved to `ddpm_params.msgpack`.

What it costs on a CPU (2 cores; the default config is sized for an accelerator): one default
step (channels 32/64/64, 2 residual blocks, attention, batch 128) takes 3.4 s on a busy 2-core
CPU, so the default 20,000 steps are a day there. A medium run that fits in about an hour on
such a CPU (load 4-8 from other jobs; numbers on the 500 samples of each sampler):

    python -m experiments.ddpm_mnist --channels 16,32,32 --num-res-blocks 1 --attention false \
        --steps 4000 --batch-size 64 --learning-rate 1e-3 --warmup-steps 200 --ema-decay 0.998 \
        --num-samples 500 --sample-batch 250

trained 4,000 steps (290,753 parameters, final loss 0.025, 70 min) and gave recognisable digits:
MNIST-feature FID DDPM 1000 steps 49.9, DDIM 100 / 50 / 20 / 10 steps 76.3 / 77.8 / 83.3 / 97.4
(floor: 1,000 real training digits 17.5), at 1006 / 94 / 45 / 19 / 9 s per 1,000 samples. DDIM
trades quality for a 10-110x shorter chain, and its quality falls slowly down to 20 steps.
`--quick` is sized for the tour on a CPU: the U-Net sees 2x2 pixel patches (`--patch-size 2`: a
14x14 grid of 4-channel positions, so its 32/64 channels cost about a fifth of what the same
widths cost at 28x28: 0.44 against 2.19 CPU-seconds per step of batch 64), predicts x0
(`--prediction x0`; see `diffusion_objectives`), trains 1,000 steps, and scores 1,000 samples of
DDIM and DPM-Solver++(2M) at 20 denoiser calls (`--samplers`, `--nfe`; `--ddpm-sampler
true` adds the 1000-step ancestral chain, 50x the cost of 20 calls). Measured on the idle 2-core
CPU with the earlier epsilon-predicting quick model (1,500 steps at 4.0 steps per second):
DPM++ 20 FID 34.5, DDIM 20 39.9, DDIM 10 47.5 (floor 4.8), at 30 / 33 / 16 s per 1,000 samples.

    python -m experiments.ddpm_mnist [--quick] [--steps N] [--workdir DIR] [--seed N]
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._diffusion_common import (best_sampler, build_unet, check_samplers, fid_curve, fid_curve_figure,
                                          fid_during_training, loss_figure, make_schedule, quality_vs_nfe_figure,
                                          run_summary, sample_and_score, sampler_fns, samples_figure, to_unit)
from experiments._framework import Built, Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 2
    time_dim: int = 32
    attention: bool = True
    patch_size: int = 1  # > 1: the U-Net sees p x p pixel patches as positions (to_patches)
    steps: int = 20_000
    batch_size: int = 128
    learning_rate: float = 5e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    prediction: Literal["epsilon", "x0", "v"] = "epsilon"  # what the network predicts
    loss_weighting: Literal["simple", "min_snr"] = "simple"  # min_snr: Hang et al. 2023's min-SNR-gamma
    min_snr_gamma: float = 5.0
    # learned variances (Nichol & Dhariwal 2021): a second output v, trained by L_simple +
    # vlb_weight * T * L_t (`genjax.diffusion.hybrid_loss`), sampled by "iDDPM n" at every budget
    learned_variance: bool = False
    vlb_weight: float = 0.001
    num_samples: int = 1_000  # scored per sampler (the held-out reference has 1,000 digits)
    sample_batch: int = 500  # samples per compiled sampler call
    ddpm_sampler: bool = True  # ancestral DDPM with all T steps (T denoiser calls per sample)
    # the fast samplers (`sampler_fns`): ddim, dpmpp_2m (DPM-Solver++(2M), Lu et al. 2022), its SDE
    # variant dpmpp_2m_sde, euler and heun (Karras et al. 2022), each at every budget of `nfe`
    # denoiser calls per sample
    samplers: tuple[str, ...] = ("ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun")
    nfe: tuple[int, ...] = (50, 20, 10, 5)
    checkpoint_every: int = 2_000
    eval_every: int = 0  # > 0: FID of the first sampler every this many steps (the FID-vs-seconds curve)
    log_every: int = 200
    keep_checkpoints: int = 2
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"

    def __post_init__(self):  # checked before the workdir is written
        if self.num_samples < 2:
            raise ValueError(f"--num-samples: expected >= 2 (FID needs two samples), got {self.num_samples}")
        check_samplers(self.samplers, self.nfe, self.num_timesteps)
        if self.vlb_weight < 0:
            raise ValueError(f"--vlb-weight: expected >= 0 (the bound's weight lambda), got {self.vlb_weight}")
        if self.learned_variance and self.loss_weighting != "simple":
            raise ValueError("--learned-variance: the hybrid loss weights the simple loss uniformly; expected "
                             f"--loss-weighting simple, got {self.loss_weighting!r}")


# The tour's pixel-space model on a CPU: the U-Net sees 2x2 pixel patches (14x14x4 positions, so
# its 32/64 channels cost what 16/32 would at 28x28) and predicts x0, sampled with DDIM and
# DPM-Solver++(2M) at 20 denoiser calls (at 10, the tour of f7a0925 measured DDIM 29.1 and DPM++
# 27.8 against 26.1 and 26.7 at 20); the 1000-step ancestral sampler would cost 50x DPM++ 20
# (the default config runs it). x0 prediction: `diffusion_objectives` measured, at 800
# steps of this model (500 samples, DPM++ 20), FID 32.8 for x0 against 60.1 for epsilon, and
# epsilon needed 1,500 steps for 34.5 (1,000 samples). 1,000 samples per sampler, so the FIDs
# compare with the floor and the GANs'.
QUICK = {"channels": (32, 64), "patch_size": 2, "num_res_blocks": 1, "attention": False, "steps": 1000,
         "batch_size": 64, "learning_rate": 2e-3, "warmup_steps": 100, "ema_decay": 0.995, "prediction": "x0",
         "num_samples": 1000, "sample_batch": 500, "ddpm_sampler": False, "samplers": ("ddim",),
         "nfe": (20,), "eval_every": 300, "checkpoint_every": 500, "log_every": 50}

# `--preset standard`, under an hour of a 2-core CPU: the quick model and recipe trained 16x longer
# (the quick run's 11.4 steps/s of 2026-12-02 make 16,000 steps 23 minutes; the VM's slow state of
# session 9 ran 5.3), a slower EMA for the longer run, DDIM and DPM++ at 20, 10 and 50 denoiser
# calls, the FID-vs-seconds curve every 2,000 steps.
STANDARD = {**QUICK, "steps": 16_000, "warmup_steps": 300, "ema_decay": 0.999, "samplers": ("ddim", "dpmpp_2m"),
            "nfe": (20, 10, 50), "eval_every": 2_000, "checkpoint_every": 2_000, "log_every": 100}

STRIP_TIMES = (0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999)


# ------------------------------------------------------------------------------ the experiment


def build(cfg: Config, image_shape: tuple[int, ...] = (28, 28, 1), dtype: str = "float32") -> Built:
    """The U-Net (`model`), the `schedule`, `apply_fn`, `init(key) -> TrainState` and the step
    (the simple loss on images scaled to [-1, 1], EMA of the weights in extras); `dtype` as in
    `build_unet`."""
    import jax.numpy as jnp

    preprocess = lambda img: img.astype(jnp.float32) / 127.5 - 1.0  # uint8 -> [-1, 1]
    return build_unet(cfg, preprocess, "image", image_shape, dtype=dtype)


def forward_strip(ctx: Context, image, cfg: Config):
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt

    from genjax import diffusion

    x0 = jnp.asarray(image, jnp.float32)[None] / 127.5 - 1.0  # [1, 28, 28, 1]
    noise = jax.random.normal(jax.random.key(cfg.seed + 3), x0.shape)
    times = [t for t in STRIP_TIMES if t < cfg.num_timesteps]
    rows = ("linear", "cosine")
    fig, axes = plt.subplots(len(rows), len(times) + 1, figsize=(1.25 * (len(times) + 1), 1.5 * len(rows)))
    for r, name in enumerate(rows):
        sched = make_schedule(name, cfg.num_timesteps)
        axes[r, 0].imshow((x0[0, ..., 0] + 1) / 2, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title("x_0", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c, t in enumerate(times, 1):
            xt = diffusion.q_sample(sched, x0, t, noise)
            axes[r, c].imshow(jnp.clip((xt[0, ..., 0] + 1) / 2, 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(f"t={t}\nabar={float(sched.alphas_cumprod[t]):.2g}", fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.report.figure(fig, "forward_process", caption="the forward process q(x_t | x_0) of one held-out digit "
                                                      "(0-based t; pixel values in [-1, 1] shown clipped)")
    plt.close(fig)


def run(ctx: Context) -> dict:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from experiments._features import fit_seconds, generator_record, mnist_evaluator
    from genjax import data, diffusion, report, train

    cfg: Config = ctx.config
    if cfg.num_samples < 2 or cfg.sample_batch < 1:
        raise ValueError(f"num_samples must be >= 2 and sample_batch >= 1, got {cfg.num_samples}, {cfg.sample_batch}")
    train_ds = data.load_images("mnist", "train", source=cfg.data_source, data_dir=cfg.data_dir)
    test_ds = data.load_images("mnist", "test", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"data: {train_ds.description}")
    rep = ctx.report
    built = build(cfg, train_ds.image_shape)
    schedule, apply_fn, step = built.schedule, built.apply_fn, built.step
    key = jax.random.key(cfg.seed)
    state = built.init(key)
    n_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
    T = schedule.num_timesteps
    rep.text(f"Data: {train_ds.description}, scaled to [-1, 1]. Model: `genjax.nn.UNet` (channels "
             f"{tuple(cfg.channels)}, {cfg.num_res_blocks} residual block(s) per level, attention at the bottleneck: "
             f"{cfg.attention}; {n_params:,} parameters), {cfg.steps} steps of batch {cfg.batch_size}, Adam "
             f"(peak learning rate {cfg.learning_rate}, gradient norm clipped at {cfg.grad_clip}), T = {T} "
             f"({cfg.schedule} betas); samples from the EMA ({cfg.ema_decay}) weights."
             + (f" Learned variances (Nichol & Dhariwal 2021): a second output v interpolates log beta_t and "
                f"log tilde-beta_t (eq. 15), trained by the hybrid loss L_simple + {cfg.vlb_weight} T L_t "
                "(`genjax.diffusion.hybrid_loss`); \"iDDPM n\" samples ancestrally with them on n strided "
                "timesteps." if cfg.learned_variance else ""))
    forward_strip(ctx, test_ds.images[0], cfg)

    evaluator = mnist_evaluator(ctx, data_source=cfg.data_source, data_dir=cfg.data_dir)
    batch = min(cfg.sample_batch, cfg.num_samples)
    fns = sampler_fns(apply_fn, schedule, (batch, *train_ds.image_shape), samplers=cfg.samplers, nfe=cfg.nfe,
                      ddpm=cfg.ddpm_sampler, clip_x0=(-1.0, 1.0), prediction=cfg.prediction,
                      learned_sample=built.sample)
    curve_sampler = next(iter(fns))
    eval_fn = fid_during_training(fns[curve_sampler][0], lambda s: s.extras["ema_params"],
                                  jax.random.fold_in(key, 10_000), num_samples=cfg.num_samples, batch=batch,
                                  evaluator=evaluator, final_step=cfg.steps, postprocess=to_unit)
    loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                           process_index=jax.process_index(), process_count=jax.process_count())
    fit = ctx.fit(state, step, loader, **({"eval_fn": eval_fn, "eval_every": cfg.eval_every} if cfg.eval_every else {}))
    ema = fit.state.extras["ema_params"]
    if ctx.is_main_process:
        train.save_params(ctx.workdir / "ddpm_params.msgpack", ema)
    ctx.log(f"trained {int(fit.state.step)} steps ({n_params} parameters); sampling")

    results = sample_and_score(ctx, fns, ema, jax.random.fold_in(key, 10_000), num_samples=cfg.num_samples,
                               batch=batch, evaluator=evaluator, postprocess=to_unit)
    if ctx.is_main_process:  # the DDPM samples
        np.save(ctx.workdir / "samples.npy", results[best_sampler(results)]["samples"].astype(np.float32))

    # the reverse process of 8 digits
    _, traj = train.jit(lambda p, k: diffusion.sample(k, diffusion.to_eps_fn(lambda x, t: apply_fn(p, x, t), schedule, cfg.prediction), schedule,
                                                    (8, *train_ds.image_shape), clip_x0=(-1.0, 1.0),
                                                    return_trajectory=True))(ema, jax.random.fold_in(key, 20_000))
    traj = np.asarray(traj)

    # ---------------------------------------------------------------- report
    history = report.read_jsonl(ctx.workdir / "metrics.jsonl")
    loss_figure(rep, history, "training loss (mean over each logging interval)",
                "the hybrid loss L_simple + lambda T L_t" if cfg.learned_variance else
                f"the simple loss of the {cfg.prediction} prediction per pixel")

    prdc = ("precision", "recall", "density", "coverage")
    rows = [(label, r["nfe"], r["fid"], r["kid"], r["kid_std"], *(r[k] for k in prdc), r["seconds_per_1000"])
            for label, r in results.items()]
    rows.append(("1,000 real training digits (floor)", "-", evaluator.real_fid, "-", "-",
                 *(evaluator.real_prdc.get(k, "-") for k in prdc), "-"))
    rep.table(["sampler", "denoiser calls", "MNIST-feature FID", "KID", "KID std", *prdc, "s per 1,000 samples"], rows,
              caption=f"{cfg.num_samples} samples per sampler from the same EMA weights and start noise, scored "
                      f"against the {len(evaluator.reference_features)} held-out digits with the features of the "
                      f"classifier in `{evaluator.classifier_dir}`; DDIM with eta = 0 and leading timestep spacing; "
                      "time measured after compiling, with block_until_ready, on "
                      f"{jax.devices()[0].device_kind} ({jax.default_backend()})")

    samples_figure(rep, [(f"{label}\nFID {r['fid']:.1f}", r["samples"]) for label, r in results.items()],
                   "the first 36 samples of each sampler (the same start noise for every sampler)", (2.6, 2.9))

    quality_vs_nfe_figure(rep, results, evaluator.real_fid)

    snaps = [t for t in (999, 750, 500, 250, 100, 50, 10, 0) if t < T]
    fig, axes = plt.subplots(8, len(snaps) + 1, figsize=(1.1 * (len(snaps) + 1), 1.15 * 8))
    for r in range(8):
        for c, t in enumerate([*snaps, None]):
            img = traj[T, r] if t is None else traj[T - 1 - t, r]
            axes[r, c].imshow(np.clip((img[..., 0] + 1) / 2, 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title("x_0" if t is None else f"t={t}", fontsize=7)
    rep.figure(fig, "reverse_process", caption="the DDPM sampling chain of 8 digits at noise levels t (0-based)")
    plt.close(fig)

    best = best_sampler(results)
    train_seconds = fit_seconds(fit, ctx.workdir / "metrics.jsonl")
    curve = fid_curve(ctx.workdir / "metrics.jsonl", final_step=int(fit.state.step), final_fid=results[curve_sampler]["fid"],
                      seconds_per_1000=results[curve_sampler]["seconds_per_1000"], train_seconds=train_seconds)
    if len(curve) > 1:
        fid_curve_figure(rep, {f"pixel DDPM ({curve_sampler})": curve}, evaluator.real_fid)
    summary = run_summary(fit, history, results, num_parameters=n_params, num_samples=cfg.num_samples,
                          evaluator=evaluator, params="ddpm_params.msgpack", best_sampler=best)
    summary["generators"] = [generator_record(
        f"pixel DDPM ({best})", fid=results[best]["fid"], kid=results[best]["kid"],
        train_seconds=train_seconds, seconds_per_1000=results[best]["seconds_per_1000"], real_fid=evaluator.real_fid,
        num_samples=cfg.num_samples, samples="samples.npy", scores=results[best],
        curve=curve if best == curve_sampler else None,
        note=f"U-Net {tuple(cfg.channels)}, patch {cfg.patch_size}, {cfg.prediction}")]
    summary["fid_curve"] = {"sampler": curve_sampler, "points": curve}
    return summary


EXPERIMENT = Experiment(
    name="ddpm_mnist",
    title="DDPM on MNIST: forward process, U-Net training, DDPM vs DDIM",
    description="A small DDPM U-Net on MNIST; ancestral sampling with 1000 steps against DDIM with 100-10 steps.",
    config=Config,
    quick=QUICK,
    presets={"standard": STANDARD},
    run=run,
    trains=True,
    evaluation_fields=frozenset({"num_samples", "sample_batch", "samplers", "nfe", "ddpm_sampler"}),
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
