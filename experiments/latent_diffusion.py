"""Latent diffusion on MNIST: DDPM in the 7x7 latent grid of the trained VQ-VAE, decoded to digits.

Rombach et al. (2022) train the diffusion model in the latent space of a pretrained autoencoder
instead of on pixels. Here the autoencoder is the VQ-VAE of `experiments/vqvae.py` (a 28x28
digit <-> a 7x7xD grid of continuous pre-quantization latents; the decoder snaps them to the
codebook first, as it was trained): found beside this run directory (`<workdir>/../vqvae`, i.e.
`runs/vqvae`, or `runs/tour/vqvae` in the tour), or trained there first (its quick config with
`--quick`), so this experiment never silently uses another model.

1. Encode the training digits, scale the latents to unit variance (`(z - mean) / std` with the
   statistics the VQ-VAE saved; Rombach et al., section 4.3.2 and appendix G), and train a
   single-resolution `genjax.nn.UNet` at 7x7 with `genjax.diffusion.ddpm_loss` (T = 1000, linear
   betas), EMA of the weights.
2. Sample with DDPM (1000 steps) and the fast samplers (`samplers`, each at `nfe` denoiser calls),
   decode, and score with the MNIST-feature FID/KID (`experiments/_features.py`); time per sample includes the decoder.
3. Compare with pixel-space DDPM: the numbers of the `ddpm_mnist` run beside this one
   (`<workdir>/../ddpm_mnist/summary.json`) when it exists. The autoencoder's own reconstructions
   of the held-out digits give the FID a perfect latent model would reach.

`samples.npy` holds the decoded DDPM samples, float32 [num_samples, 28, 28, 1] in [0, 1].

Measured on a 2-core CPU (latent U-Net `--channels 64 --num-res-blocks 1 --attention false`,
3,000 steps of batch 128, 500 samples): with the VQ-VAE's default latent_dim 16 the latent is
7x7x16 = 784 numbers, as many as the image, and the latent model got MNIST-feature FID 267
(DDPM 1000); with `python -m experiments.vqvae --latent-dim 4` (7x7x4 = 196 numbers, held-out
MSE 0.0047 vs 0.0045, all 128 codes used) the same latent model got FID 148, sampling at 350 s per
1,000 samples against 1006 s for the pixel-space U-Net of `ddpm_mnist`'s medium run (FID 49.9
after 4,000 steps). Compress before diffusing: the gain of latent diffusion is a smaller space.

Before or after quantization (`--latent continuous|quantized`), measured with the quick config on
the quick VQ-VAE with latent_dim 4 (recon MSE 0.0097, all 128 codes used; its reconstructions'
FID 16.2 against a floor of 4.8, the best a latent model can reach): continuous latents (the
encoder's output, snapped to the codebook by the decoder) FID 71.7 / 73.2 with DPM++ 20 / 10,
quantized latents (the codes' vectors) 80.1 / 79.3. So the default is continuous.

    python -m experiments.latent_diffusion [--quick] [--steps N] [--workdir DIR] [--seed N]

References:
    R. Rombach, A. Blattmann, D. Lorenz, P. Esser, B. Ommer, "High-Resolution Image Synthesis with
    Latent Diffusion Models", CVPR 2022 (arXiv:2112.10752).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._diffusion_common import (best_sampler, build_unet, check_samplers, fid_at_seconds, fid_curve,
                                          fid_curve_figure, fid_during_training, loss_figure, run_summary,
                                          sample_and_score, sampler_fns, samples_figure)
from experiments._framework import Built, Context, Experiment, prerequisite_run
from experiments._vq_autoencoder import AUTOENCODER_CONFIG, AUTOENCODER_PARAMS, load_autoencoder


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    latent: Literal["continuous", "quantized"] = "continuous"  # the encoder's output before or after the codebook
    num_timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "linear"
    channels: tuple[int, ...] = (64,)  # one level: the 7x7 grid is not halved
    num_res_blocks: int = 2
    time_dim: int = 32
    attention: bool = True
    steps: int = 20_000
    batch_size: int = 128
    learning_rate: float = 5e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    prediction: Literal["epsilon", "x0", "v"] = "epsilon"  # what the network predicts
    loss_weighting: Literal["simple", "min_snr"] = "simple"  # min_snr: Hang et al. 2023's min-SNR-gamma
    min_snr_gamma: float = 5.0
    num_samples: int = 1_000
    sample_batch: int = 500
    ddpm_sampler: bool = True  # ancestral DDPM with all T steps (T denoiser calls per sample)
    samplers: tuple[str, ...] = ("ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun")  # as ddpm_mnist's
    nfe: tuple[int, ...] = (50, 20, 10, 5)  # denoiser calls per sample, for each sampler
    checkpoint_every: int = 2_000
    eval_every: int = 0  # > 0: FID of the first sampler every this many steps (the FID-vs-seconds curve)
    log_every: int = 200
    keep_checkpoints: int = 2
    parallel: Literal["auto", "none", "pmap", "sharded"] = "auto"

    def __post_init__(self):  # checked before the workdir is written
        check_samplers(self.samplers, self.nfe, self.num_timesteps)


# The 7x7 denoiser trains ~4x faster per step than the pixel U-Net of ddpm_mnist's quick config,
# so the quick run affords 2,000 steps in less time than that one spends on 1,000. It predicts x0:
# measured with this config (1,000 samples), DDIM 20 FID 78.3 predicting epsilon, 43.3 predicting x0.
QUICK = {"channels": (32,), "num_res_blocks": 1, "attention": False, "steps": 2_000, "batch_size": 64,
         "learning_rate": 2e-3, "warmup_steps": 50, "ema_decay": 0.98, "prediction": "x0", "num_samples": 1_000,
         "sample_batch": 500,
         "ddpm_sampler": False, "samplers": ("ddim",), "nfe": (20,), "eval_every": 500, "checkpoint_every": 1_000,
         "log_every": 100}

# `--preset standard`, an hour of a 2-core CPU together with the VQ-VAE it builds on (vqvae's
# standard preset): the 7x7 denoiser at twice the width, 20,000 steps, a slower EMA, DDIM and DPM++ at
# 20, 10 and 50 denoiser calls, the FID-vs-seconds curve every 2,000 steps.
STANDARD = {**QUICK, "channels": (64,), "steps": 20_000, "warmup_steps": 200, "ema_decay": 0.999,
            "samplers": ("ddim", "dpmpp_2m"), "nfe": (20, 10, 50), "eval_every": 2_000, "checkpoint_every": 2_000,
            "log_every": 200}


def build(cfg: Config, latent_shape: tuple[int, ...]) -> Built:
    """The latent U-Net (`model`), the `schedule`, `apply_fn`, `init(key) -> TrainState` and the
    step (the simple loss on the scaled latents `batch["z"]` of `latent_shape`, EMA of the weights
    in extras)."""
    return build_unet(cfg, lambda z: z, "z", latent_shape)


def pixel_rows(ctx: Context) -> tuple[list[tuple], dict | None]:
    """Rows (label, denoiser calls, FID, KID, s per 1,000 samples) of the ddpm_mnist run beside
    this one, and its summary (None if there is none)."""
    from genjax import report

    path = ctx.workdir.resolve().parent / "ddpm_mnist" / "summary.json"
    if not path.exists():
        return [], None
    s = report.read_json(path)
    rows = []
    for key in sorted((k for k in s if k.startswith("fid/")), key=lambda k: -int(k.rsplit("_", 1)[-1])):
        tag = key[len("fid/"):]
        method, n = tag.rsplit("_", 1)
        rows.append((f"pixel space: {method.upper()} {n}", int(n), s[key], s.get(f"kid/{tag}"),
                     s.get(f"seconds_per_1000/{tag}")))
    return rows, s


def equal_wall_clock(latent: list[dict], pixel: list[dict]) -> list[dict]:
    """Latent against pixel diffusion at equal seconds: for every point of either `fid_curve`,
    the other curve's FID at the same seconds (`fid_at_seconds`; None outside its span), sorted
    by seconds. Rows: {"seconds", "latent_fid", "latent_step", "pixel_fid", "pixel_step"} (the
    step of the curve the point comes from, None for the interpolated side)."""
    rows = [{"seconds": p["seconds"], "latent_fid": p["fid"], "latent_step": p["step"],
             "pixel_fid": fid_at_seconds(pixel, p["seconds"]), "pixel_step": None} for p in latent]
    rows += [{"seconds": p["seconds"], "latent_fid": fid_at_seconds(latent, p["seconds"]), "latent_step": None,
              "pixel_fid": p["fid"], "pixel_step": p["step"]} for p in pixel]
    return sorted(rows, key=lambda r: r["seconds"])


def run(ctx: Context) -> dict:
    import jax
    import numpy as np

    from experiments._features import fit_seconds, generator_record, mnist_evaluator
    from genjax import data, report, train

    cfg: Config = ctx.config
    train_ds = data.load_images("mnist", "train", source=cfg.data_source, data_dir=cfg.data_dir)
    test_ds = data.load_images("mnist", "test", source=cfg.data_source, data_dir=cfg.data_dir)
    autoencoder_dir = prerequisite_run(ctx, "vqvae", (AUTOENCODER_PARAMS, AUTOENCODER_CONFIG),
                                       data_source=cfg.data_source, data_dir=cfg.data_dir)
    encode, decode, info = load_autoencoder(autoencoder_dir)
    codebook = jax.numpy.asarray(info["codebook"])
    if cfg.latent == "quantized":  # the codes' vectors, as the decoder sees them
        encode_all = lambda images: train.map_batched(lambda x: codebook[encode(x)[1]], images, batch_size=500)
        mean, std = float(info["quantized_latent_mean"]), float(info["quantized_latent_std"])
    else:  # the encoder's continuous output, snapped to the codebook by the decoder
        encode_all = lambda images: train.map_batched(lambda x: encode(x)[0], images, batch_size=500)
        mean, std = float(info["latent_mean"]), float(info["latent_std"])
    latent_shape = tuple(info["latent_shape"])
    ctx.log(f"autoencoder: latents {latent_shape}, mean {mean:.3f}, std {std:.3f}; encoding the training digits")
    latents = (encode_all(train_ds.images) - mean) / std  # [N, 7, 7, D], ~unit variance

    built = build(cfg, latent_shape)
    schedule, apply_fn, step = built.schedule, built.apply_fn, built.step
    key = jax.random.key(cfg.seed)
    state = built.init(key)
    n_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
    evaluator = mnist_evaluator(ctx, data_source=cfg.data_source, data_dir=cfg.data_dir)
    batch = min(cfg.sample_batch, cfg.num_samples)
    # the decoder is part of the timed, compiled sampler: latents -> images
    fns = {label: (lambda p, k, fn=fn: decode(fn(p, k) * std + mean), nfe)
           for label, (fn, nfe) in sampler_fns(apply_fn, schedule, (batch, *latent_shape), samplers=cfg.samplers,
                                                    nfe=cfg.nfe, ddpm=cfg.ddpm_sampler,
                                                    prediction=cfg.prediction).items()}
    curve_sampler = next(iter(fns))
    eval_fn = fid_during_training(fns[curve_sampler][0], lambda s: s.extras["ema_params"],
                                  jax.random.fold_in(key, 10_000), num_samples=cfg.num_samples, batch=batch,
                                  evaluator=evaluator, final_step=cfg.steps)
    loader = data.ArrayLoader({"z": latents.astype(np.float32)}, cfg.batch_size, cfg.seed,
                              process_index=jax.process_index(), process_count=jax.process_count())
    fit = ctx.fit(state, step, loader, **({"eval_fn": eval_fn, "eval_every": cfg.eval_every} if cfg.eval_every else {}))
    ema = fit.state.extras["ema_params"]

    # ---------------------------------------------------------------- sampling and scoring
    results = sample_and_score(ctx, fns, ema, jax.random.fold_in(key, 10_000), num_samples=cfg.num_samples,
                               batch=batch, evaluator=evaluator, log_prefix="latent ")
    if ctx.is_main_process:  # the DDPM samples
        np.save(ctx.workdir / "samples.npy", results[best_sampler(results)]["samples"].astype(np.float32))
    recon = train.map_batched(decode, encode_all(test_ds.images), batch_size=500)
    recon_fid = evaluator.fid(recon)

    # ---------------------------------------------------------------- report
    rep = ctx.report
    T = schedule.num_timesteps
    rep.text(f"Autoencoder: the VQ-VAE in `{autoencoder_dir}` (latents {latent_shape}, {info.get('num_codes')} "
             f"codes); latents scaled by 1/{std:.3f} after subtracting {mean:.3f}. Denoiser: `genjax.nn.UNet` at "
             f"{latent_shape[0]}x{latent_shape[1]} (channels {tuple(cfg.channels)}, {cfg.num_res_blocks} residual "
             f"block(s), attention: {cfg.attention}; {n_params:,} parameters), {cfg.steps} steps of batch "
             f"{cfg.batch_size}, T = {T} ({cfg.schedule} betas), EMA {cfg.ema_decay}.")
    pix_rows, pix_summary = pixel_rows(ctx)
    rows = [(f"latent space: {label}", r["nfe"], r["fid"], r["kid"], r["seconds_per_1000"])
            for label, r in results.items()]
    rows += pix_rows
    rows.append(("VQ-VAE reconstructions of the held-out digits", "-", recon_fid, "-", "-"))
    rows.append(("1,000 real training digits (floor)", "-", evaluator.real_fid, "-", "-"))
    if pix_summary is None:
        note = " No `ddpm_mnist` run beside this one: run it for the pixel-space rows."
    else:
        note = (f" Pixel-space rows: the `ddpm_mnist` run beside this one ({pix_summary.get('num_samples')} samples, "
                f"{pix_summary.get('num_parameters')} parameters, {pix_summary.get('steps')} steps).")
    rep.table(["model / sampler", "denoiser calls", "MNIST-feature FID", "KID", "s per 1,000 samples"], rows,
              caption=f"{cfg.num_samples} samples per latent sampler, decoded (decoding is included in the time); "
                      "FID/KID against the held-out digits with the runtime classifier's features; time of the "
                      f"compiled samplers with block_until_ready on {jax.devices()[0].device_kind}." + note)

    panels = [(f"latent {label}", r["samples"]) for label, r in results.items()]
    pixel_samples = ctx.workdir.resolve().parent / "ddpm_mnist" / "samples.npy"
    if pix_summary is not None and pixel_samples.exists():
        panels.append(("pixel DDPM (ddpm_mnist)", np.load(pixel_samples)))
    panels.append(("VQ-VAE reconstructions", recon))
    samples_figure(rep, panels, "the first 36 samples of each sampler, with pixel-space DDPM samples and the "
                                "autoencoder's reconstructions for comparison", (2.8, 3.0))

    autoencoder_seconds = float(info.get("train_seconds", 0.0))
    train_seconds = fit_seconds(fit, ctx.workdir / "metrics.jsonl")
    curve = fid_curve(ctx.workdir / "metrics.jsonl", final_step=int(fit.state.step), final_fid=results[curve_sampler]["fid"],
                      seconds_per_1000=results[curve_sampler]["seconds_per_1000"], train_seconds=train_seconds,
                      extra_seconds=autoencoder_seconds)
    pixel_curve = equal_time = None
    if pix_summary is not None and pix_summary.get("fid_curve"):
        pixel_curve = pix_summary["fid_curve"]
        equal_time = equal_wall_clock(curve, pixel_curve["points"])
        rep.table(["seconds (training + 1,000 samples)", f"latent {curve_sampler}: FID", "latent steps",
                   f"pixel {pixel_curve['sampler']}: FID", "pixel steps"],
                  [tuple("-" if v is None else v for v in (r["seconds"], r["latent_fid"], r["latent_step"],
                                                          r["pixel_fid"], r["pixel_step"])) for r in equal_time],
                  caption="at equal wall clock: each evaluation of either model, against the other's FID at the "
                          "same seconds (interpolated in log-log between its evaluations; '-' outside its run). "
                          "The latent model's seconds include the VQ-VAE's training.")
    curves = {f"latent diffusion ({curve_sampler})": curve}
    if pixel_curve is not None:
        curves[f"pixel DDPM ({pixel_curve['sampler']}, ddpm_mnist)"] = pixel_curve["points"]
    if sum(len(c) for c in curves.values()) > 2:
        fid_curve_figure(rep, curves, evaluator.real_fid)

    history = report.read_jsonl(ctx.workdir / "metrics.jsonl")
    loss_figure(rep, history, "latent training loss (mean over each logging interval)",
                "the simple loss in latent space, per latent coordinate")

    summary = run_summary(fit, history, results, num_parameters=n_params, num_samples=cfg.num_samples,
                          evaluator=evaluator, latent_shape=list(latent_shape), reconstruction_fid=recon_fid,
                          autoencoder_dir=str(autoencoder_dir))
    best = best_sampler(results)
    summary["fid_curve"] = {"sampler": curve_sampler, "points": curve}
    if equal_time is not None:
        summary["equal_wall_clock"] = equal_time
    summary["generators"] = [generator_record(
        f"latent diffusion ({best})", fid=results[best]["fid"], kid=results[best]["kid"],
        train_seconds=train_seconds + autoencoder_seconds,
        seconds_per_1000=results[best]["seconds_per_1000"],
        real_fid=evaluator.real_fid, num_samples=cfg.num_samples, samples="samples.npy", scores=results[best],
        curve=curve if best == curve_sampler else None, note=f"{cfg.latent} {'x'.join(map(str, latent_shape))} latents; training includes the VQ-VAE's "
             f"{autoencoder_seconds:.0f} s")]
    if pix_summary is not None:
        summary["pixel_fid/ddpm"] = pix_summary.get(f"fid/ddpm_{T}")
        summary["pixel_seconds_per_1000/ddpm"] = pix_summary.get(f"seconds_per_1000/ddpm_{T}")
    return summary


EXPERIMENT = Experiment(
    name="latent_diffusion",
    title="Latent diffusion: DDPM in the VQ-VAE's latent space",
    description="DDPM on the 7x7 latent grid of the trained VQ-VAE, decoded to digits, against pixel-space DDPM.",
    config=Config,
    quick=QUICK,
    presets={"standard": STANDARD},
    run=run,
    trains=True,
    evaluation_fields=frozenset({"num_samples", "sample_batch", "samplers", "nfe", "ddpm_sampler"}),
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
