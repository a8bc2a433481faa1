"""What the diffusion experiments share (`ddpm_mnist`, `latent_diffusion`, `diffusion_2d`).

- `make_schedule(name, T)`: the linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021) betas;
- `warmup_cosine(...)`, `make_optimizer(...)`: a warm-up + cosine-decay learning rate, and Adam
  on it, optionally clipped;
- `make_ddpm_step(...)`: the mean simple loss (`genjax.diffusion.ddpm_loss`) with an EMA of the
  weights (`genjax.train.with_ema`, warm-up decay min(d, (1 + n) / (10 + n))); `init_with_ema`:
  the state it trains;
- `build_unet(cfg, preprocess, data_key, sample_shape)`: a `genjax.nn.UNet` denoiser, its state
  and step, as a `Built`;
- `sampler_fns(...)`: DDPM with all T steps and each fast sampler (DDIM, DPM++, DPM++SDE, Euler,
  Heun) at a few budgets of denoiser calls, `fn(params, key) -> samples`; `check_samplers`;
  `generate(...)`: many samples from one, compiled ahead of time and timed
  (`genjax.train.time_compiled`);
- `sample_and_score(...)`: every sampler run, timed and scored by MNIST-feature FID/KID;
  `run_summary(...)`: the run's summary.json entries;
- `samples_figure(...)`, `loss_figure(...)`: the sample grids and the training-loss curve.
"""

from __future__ import annotations

from typing import Any, Callable


def make_schedule(name: str, num_timesteps: int):
    """The `genjax.diffusion.Schedule` of the "linear" or "cosine" betas with T steps."""
    from genjax import diffusion

    fn = diffusion.linear_beta_schedule if name == "linear" else diffusion.cosine_beta_schedule
    return diffusion.make_schedule(fn(num_timesteps))


def warmup_cosine(learning_rate: float, warmup_steps: int, steps: int):
    """Linear warm-up from 0 over min(warmup_steps, steps // 2) steps, then cosine decay to a
    tenth of `learning_rate` at `steps`."""
    import optax

    warmup = min(warmup_steps, max(steps // 2, 1))
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, max(steps, warmup + 1),
                                              end_value=0.1 * learning_rate)


def make_optimizer(learning_rate: float, warmup_steps: int, steps: int, grad_clip: float):
    """Adam on `warmup_cosine`, after clipping the gradients' global norm at `grad_clip` (0: no
    clipping)."""
    import optax

    lr = warmup_cosine(learning_rate, warmup_steps, steps)
    parts = ([optax.clip_by_global_norm(grad_clip)] if grad_clip else []) + [optax.adam(lr)]
    return optax.chain(*parts)


def make_ddpm_step(apply_fn: Callable, schedule, ema_decay: float, preprocess: Callable, data_key: str,
                   prediction: str = "epsilon", loss_weighting: str = "simple", min_snr_gamma: float = 5.0,
                   vlb_weight: float | None = None):
    """The train step: the mean loss on `preprocess(batch[data_key])`, then the EMA of the
    weights in `state.extras["ema_params"]` (`genjax.train.with_ema`, with its warm-up).

    The network predicts `prediction` ("epsilon", "x0" or "v"); the loss is the simple loss of
    that target (`loss_weighting="simple"`, `genjax.diffusion.ddpm_loss`) or its min-SNR-gamma
    weighting (`"min_snr"`, `genjax.diffusion.min_snr_loss`, Hang et al. 2023). With a
    `vlb_weight`, `apply_fn` returns `(prediction, v)` and the loss is the hybrid loss of learned
    variances (`genjax.diffusion.hybrid_loss`, Nichol & Dhariwal 2021; the simple weighting only)."""
    import jax.numpy as jnp

    from genjax import diffusion, train

    def loss_fn(params, batch, key, state):
        x0 = preprocess(batch[data_key])
        model_fn = lambda x, t: apply_fn(params, x, t)  # noqa: E731
        if vlb_weight is not None:
            loss = diffusion.hybrid_loss(key, model_fn, schedule, x0, vlb_weight, prediction)  # [B]
        elif loss_weighting == "min_snr":
            loss = diffusion.min_snr_loss(key, model_fn, schedule, x0, prediction, min_snr_gamma)  # [B]
        else:
            loss = diffusion.ddpm_loss(key, model_fn, schedule, x0, prediction)  # [B]
        return jnp.mean(loss), ({}, {})

    return train.with_ema(train.make_train_step(loss_fn), ema_decay)


def init_with_ema(key, params, tx):
    """A `TrainState` of `params` with `tx`, whose `extras["ema_params"]` starts as a copy of them
    (its own buffers: the fused step donates the whole state); the run's key is fold_in(key, 1)."""
    import jax
    import jax.numpy as jnp

    from genjax import train

    return train.TrainState.create(params=params, tx=tx, key=jax.random.fold_in(key, 1),
                                   extras={"ema_params": jax.tree.map(jnp.copy, params)})


def to_unit(x):
    """[-1, 1] model space -> [0, 1] data space, clipped, as float32 NumPy."""
    import numpy as np

    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def to_patches(x, patch: int):
    """[B, H, W, C] -> [B, H/p, W/p, p*p*C]: each p x p patch of pixels as the channels of one
    position (pixel unshuffle, "space to depth"); the identity for p = 1."""
    if patch == 1:
        return x
    b, h, w, c = x.shape
    x = x.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // patch, w // patch, patch * patch * c)


def from_patches(x, patch: int):
    """The inverse of `to_patches`: [B, H/p, W/p, p*p*C] -> [B, H, W, C]."""
    if patch == 1:
        return x
    b, hp, wp, cpp = x.shape
    c = cpp // (patch * patch)
    x = x.reshape(b, hp, wp, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp * patch, wp * patch, c)


def build_unet(cfg, preprocess: Callable, data_key: str, sample_shape: tuple[int, ...], dtype: str = "float32"):
    """The U-Net denoiser of a config with the fields of `ddpm_mnist.Config` (channels,
    num_res_blocks, time_dim, attention, schedule, num_timesteps, learning_rate, warmup_steps,
    steps, grad_clip, ema_decay, prediction, loss_weighting, min_snr_gamma, and optionally
    patch_size), for samples of `sample_shape` ([H, W, C]). With `patch_size` p > 1 the U-Net
    sees each p x p patch of pixels as one position with p*p*C channels (`to_patches`; the
    patch size 2 of DiT and U-ViT): still a model of every pixel, at a quarter of the positions,
    which on a CPU buys wider layers for the same time.

    Returns a `Built`: the U-Net (`model`), the `schedule`, `apply_fn(params, x, t) -> eps`,
    `init(key) -> TrainState` (EMA weights in extras) and the DDPM `step` on
    `preprocess(batch[data_key])`. With `cfg.learned_variance` the U-Net has twice the output
    channels, the second half v of Nichol & Dhariwal's eq. (15) (the network's output mapped by
    (out + 1) / 2), the step minimises `hybrid_loss` with `cfg.vlb_weight`, `apply_fn` is the
    first half (so every fixed-variance sampler works unchanged) and
    `sample(params, key, shape, num_steps=None, clip_x0=None)` is ancestral sampling with the
    learned variances (`learned_variance_sample`: all T steps, or `num_steps` strided ones). With `dtype="bfloat16"` `apply_fn` (so the step and the
    samplers) runs the U-Net in bfloat16 (`genjax.train.mixed_precision`: float32 master and EMA
    weights, gradients, loss and predicted noise).
    """
    import jax
    import jax.numpy as jnp

    from experiments._framework import Built
    from genjax import diffusion, train
    from genjax.nn import UNet

    learned = getattr(cfg, "learned_variance", False)
    patch = getattr(cfg, "patch_size", 1)
    h, w, c = sample_shape
    if h % patch or w % patch:
        raise ValueError(f"--patch-size {patch} must divide the sample size {h}x{w}")
    model = UNet(channels=tuple(cfg.channels), num_res_blocks=cfg.num_res_blocks, time_dim=cfg.time_dim,
                 attention=cfg.attention, out_channels=2 * patch * patch * c if learned else None)
    schedule = make_schedule(cfg.schedule, cfg.num_timesteps)
    tx = make_optimizer(cfg.learning_rate, cfg.warmup_steps, cfg.steps, cfg.grad_clip)
    network = train.mixed_precision(
        lambda params, x, t: from_patches(model.apply({"params": params}, to_patches(x, patch), t), patch), dtype)

    def learned_fn(params, x, t):  # (prediction, v): v = (out + 1) / 2, as improved-diffusion maps its output
        out = network(params, x, t)
        return out[..., :c], (out[..., c:] + 1.0) / 2.0

    apply_fn = (lambda params, x, t: learned_fn(params, x, t)[0]) if learned else network

    def init(key):
        x = to_patches(jnp.zeros((1, *sample_shape)), patch)
        params = jax.jit(model.init)(key, x, jnp.zeros((1,), jnp.int32))["params"]
        return init_with_ema(key, params, tx)

    def sample(params, key, shape, num_steps=None, clip_x0=None):  # ancestral, with the learned variances
        return diffusion.learned_variance_sample(key, lambda x, t: learned_fn(params, x, t), schedule, shape,
                                                 num_steps, prediction=cfg.prediction, clip_x0=clip_x0)

    step = make_ddpm_step(learned_fn if learned else network, schedule, cfg.ema_decay, preprocess, data_key,
                          cfg.prediction, cfg.loss_weighting, cfg.min_snr_gamma,
                          getattr(cfg, "vlb_weight", 0.001) if learned else None)
    return Built(model=model, init=init, step=step, schedule=schedule, apply_fn=apply_fn,
                 sample=sample if learned else None)


SAMPLER_LABELS = {"ddim": "DDIM", "dpmpp_2m": "DPM++", "dpmpp_2m_sde": "DPM++SDE", "euler": "Euler", "heun": "Heun"}


def check_samplers(samplers, nfe, num_timesteps: int) -> None:
    """The domain checks of the `samplers` and `nfe` config fields (ValueError naming the flag)."""
    bad = [s for s in samplers if s not in SAMPLER_LABELS]
    if bad:
        raise ValueError(f"--samplers: expected names from {list(SAMPLER_LABELS)}, got {bad}")
    too_many = [n for n in nfe if not 1 <= n <= num_timesteps]
    if too_many:
        raise ValueError(f"--nfe: each must be in [1, --num-timesteps ({num_timesteps})], got {too_many}")


def sampler_steps(sampler: str, nfe: int) -> tuple[int, int]:
    """(steps, denoiser calls) of `sampler` for a budget of `nfe` calls: one call per step, but
    Heun's N steps take 2N - 1 (its last step is Euler's), so Heun gets (nfe + 1) // 2 steps."""
    if sampler == "heun":
        steps = max((nfe + 1) // 2, 1)
        return steps, 2 * steps - 1
    return nfe, nfe


def sampler_fns(apply_fn: Callable, schedule, shape: tuple[int, ...], *, samplers=("ddim", "dpmpp_2m"),
                nfe=(20,), ddpm: bool = True, clip_x0=None, prediction: str = "epsilon",
                learned_sample: Callable | None = None) -> dict:
    """`{label: (fn(params, key) -> samples of `shape`, number of denoiser calls)}`: "DDPM T" with
    all T steps (if `ddpm`), then each sampler of `samplers` at each budget of `nfe` denoiser calls
    per sample: "DDIM n" (eta = 0, leading spacing; `genjax.diffusion.ddim_sample`), "DPM++ n"
    (DPM-Solver++(2M)) and "DPM++SDE n" (its SDE variant; `dpmpp_2m_sample`), "Euler n" and
    "Heun n" (Karras sigmas; `euler_sample`, `heun_sample`, where n = 2 * steps - 1, see
    `sampler_steps`). The network predicts `prediction`. With `clip_x0`, every sampler clips its
    x0 predictions and DDIM recomputes the noise from the clipped x0_hat
    (`use_clipped_model_output`, as guided-diffusion's DDIM does; on ddpm_mnist's quick model it
    lowered DDIM's FID from about 270 to 190). With `learned_sample` (a learned-variance model's
    `Built.sample`), "iDDPM n" (Nichol & Dhariwal's improved DDPM: ancestral sampling with the
    learned variances on n strided timesteps) follows at every budget of `nfe` (and at T if
    `ddpm`)."""
    from genjax import diffusion

    T = schedule.num_timesteps

    def eps_fn(params):
        return diffusion.to_eps_fn(lambda x, t: apply_fn(params, x, t), schedule, prediction)

    def ddpm_fn(params, key):
        return diffusion.sample(key, eps_fn(params), schedule, shape, clip_x0=clip_x0)

    fns = {f"DDPM {T}": (ddpm_fn, T)} if ddpm else {}
    for name in samplers:
        for budget in nfe:
            steps, calls = sampler_steps(name, budget)
            if name == "ddim":
                def fn(params, key, n=steps):
                    return diffusion.ddim_sample(key, eps_fn(params), schedule, shape, n,
                                                 clip_x0=clip_x0, use_clipped_model_output=clip_x0 is not None)
            else:
                def fn(params, key, n=steps, name=name):
                    return diffusion.sample_with(key, lambda x, t: apply_fn(params, x, t), schedule, shape, name, n,
                                                 prediction, clip_x0=clip_x0)
            fns[f"{SAMPLER_LABELS[name]} {calls}"] = (fn, calls)
    if learned_sample is not None:
        for steps in ((T,) if ddpm else ()) + tuple(nfe):
            def fn(params, key, n=steps):
                return learned_sample(params, key, shape, n, clip_x0)
            fns[f"iDDPM {steps}"] = (fn, steps)
    return fns


def generate(fn: Callable, params: Any, key, num: int, batch: int):
    """`num` samples from `fn(params, key) -> [batch, ...]`, compiled once ahead of time.

    Returns (samples as NumPy [num, ...], seconds spent sampling). Batch i uses
    `fold_in(key, i)`; the time covers every call (`genjax.train.time_compiled`: each waited
    for, compilation excluded). To time a decoder with the sampler, compose it into `fn`.
    """
    import jax
    import numpy as np

    from genjax import train

    keys = [jax.random.fold_in(key, i) for i in range(-(-num // batch))]
    outputs, seconds = train.time_compiled(fn, [(params, k) for k in keys])
    return np.concatenate([np.asarray(x) for x in outputs])[:num], seconds


def fid_during_training(fn: Callable, params_of: Callable, key, *, num_samples: int, batch: int, evaluator,
                        final_step: int, postprocess: Callable = lambda x: x) -> Callable:
    """An `eval_fn` for `ctx.fit`: the MNIST-feature FID of `num_samples` samples of the sampler
    `fn(params, key) -> [batch, ...]` (one of `sampler_fns`' entries) from `params_of(state)`,
    the same keys at every evaluation. Skipped at `final_step`, which the final scoring covers.
    Its time is not training time: `fit` times each chunk before evaluating."""
    import jax
    import numpy as np

    from genjax import train

    jitted = train.jit(fn)  # compiled at the first evaluation, reused by the later ones
    keys = [jax.random.fold_in(key, i) for i in range(-(-num_samples // batch))]

    def eval_fn(state) -> dict:
        if int(state.step) >= final_step:
            return {}
        params = params_of(state)
        x = np.concatenate([np.asarray(jitted(params, k)) for k in keys])[:num_samples]
        return {"fid": evaluator.fid(postprocess(x))}

    return eval_fn


def fid_curve(metrics_path, *, final_step: int, final_fid: float, seconds_per_1000: float, train_seconds: float,
              extra_seconds: float = 0.0) -> list[dict]:
    """FID against wall-clock seconds during training, from a run's `metrics.jsonl`: one point
    per `fid_during_training` evaluation, and the final score at `final_step`. A point's
    `seconds` is what a run stopped at its step would have cost: the chunks' times up to it
    (evaluations excluded) plus the fit's fixed cost (compiling, checkpoints: `train_seconds`,
    the whole training's `fit_seconds`, less all chunks' times), plus `extra_seconds` (e.g. the
    autoencoder a latent model needs) plus sampling 1,000 images at `seconds_per_1000`. The last
    point is then the generator record's total."""
    from genjax import report

    records = [r for r in report.read_jsonl(metrics_path) if "steps_per_s" in r]
    evals, trained, prev = [], 0.0, 0
    for r in records:
        if r["step"] <= prev:  # a resumed run logs chunks again: keep the first
            continue
        trained += (r["step"] - prev) / r["steps_per_s"]
        prev = r["step"]
        if "eval/fid" in r and r["step"] < final_step:
            evals.append((int(r["step"]), trained, float(r["eval/fid"])))
    fixed = max(float(train_seconds) - trained, 0.0) + extra_seconds + seconds_per_1000
    return ([{"step": s, "seconds": t + fixed, "fid": f} for s, t, f in evals]
            + [{"step": int(final_step), "seconds": max(trained, float(train_seconds)) + extra_seconds + seconds_per_1000,
                "fid": float(final_fid)}])


def fid_at_seconds(curve: list[dict], seconds: float) -> float | None:
    """The FID of `curve` (`fid_curve`) at `seconds`, interpolated linearly in log seconds and
    log FID between its two neighbouring points; None outside the curve's span."""
    import math

    for p in curve:
        if p["seconds"] == seconds:
            return p["fid"]
    for a, b in zip(curve, curve[1:]):
        if a["seconds"] < seconds < b["seconds"]:
            w = (math.log(seconds) - math.log(a["seconds"])) / (math.log(b["seconds"]) - math.log(a["seconds"]))
            return math.exp((1 - w) * math.log(a["fid"]) + w * math.log(b["fid"]))
    return None


def sample_and_score(ctx, fns: dict, params: Any, key, *, num_samples: int, batch: int, evaluator,
                     postprocess: Callable = lambda x: x, log_prefix: str = "") -> dict:
    """Every sampler of `fns` (see `sampler_fns`) run for `num_samples` samples from the same
    key, then `postprocess` (on the host, untimed) and scored by `evaluator` (MNIST-feature FID
    and KID, precision/recall/density/coverage). Returns `{label: {"samples", "nfe",
    "seconds_per_1000", "fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}}`."""
    results = {}
    for label, (fn, nfe) in fns.items():
        x, seconds = generate(fn, params, key, num_samples, batch)
        x = postprocess(x)
        results[label] = {"samples": x, "nfe": nfe, "seconds_per_1000": seconds / num_samples * 1000,
                          **evaluator.scores(x)}
        ctx.log(f"{log_prefix}{label}: FID {results[label]['fid']:.2f}, "
                f"{results[label]['seconds_per_1000']:.2f} s / 1000 samples")
    return results


def run_summary(fit, history: list[dict], results: dict, *, num_parameters: int, num_samples: int, evaluator,
                **extra) -> dict:
    """summary.json of a sampling run: its training (steps, final loss, digest, resume, speed), the
    evaluation's floor (`real_fid`), `extra`, and `sampler_summary(results)`."""
    from genjax import train

    return {
        "steps": int(fit.state.step),
        "final_loss": history[-1]["loss"] if history else None,
        "num_parameters": num_parameters,
        "num_samples": num_samples,
        "real_fid": evaluator.real_fid,
        "params_digest": train.digest(fit.state),
        "resumed_from": fit.resumed_from,
        "steps_per_s": train.steps_per_second(fit.history),
        "samples": "samples.npy",
        **extra,
        **sampler_summary(results),
    }


def sampler_summary(results: dict) -> dict:
    """The summary.json entries of `sample_and_score`'s results: `fid/<tag>`, `kid/<tag>`,
    `precision/<tag>` (and recall, density, coverage) and `seconds_per_1000/<tag>`, the tag
    being the label in lower case with "_" for " "."""
    summary = {}
    for label, r in results.items():
        tag = label.lower().replace(" ", "_")
        for name in ("fid", "kid", "precision", "recall", "density", "coverage", "seconds_per_1000"):
            if name in r:
                summary[f"{name}/{tag}"] = r[name]
    return summary


def samples_figure(rep, panels, caption: str, panel_size: tuple[float, float]) -> None:
    """"samples": a 6x6 grid of the first 36 images of each `(title, images [N, H, W, 1] in
    [0, 1])`, side by side, each panel `panel_size` inches."""
    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import report

    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]))
    for ax, (title, imgs) in zip(np.atleast_1d(axes), panels):
        ax.imshow(report.image_grid(imgs, cols=6, rows=6), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    rep.figure(fig, "samples", caption=caption)
    plt.close(fig)


def loss_figure(rep, history: list[dict], title: str, caption: str) -> None:
    """The training loss of `history` (metrics.jsonl records) on a log scale, as "training_loss"."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    rep.figure(fig, "training_loss", caption=caption)
    plt.close(fig)


def best_sampler(results: dict) -> str:
    """The label of `sample_and_score`'s results with the lowest FID."""
    return min(results, key=lambda label: results[label]["fid"])


def quality_vs_nfe_figure(rep, results: dict, real_fid: float) -> None:
    """"quality_vs_speed": FID and seconds per 1,000 samples against denoiser calls, one line per
    sampler family (DDPM, DDIM, DPM++: the label's first word), the floor dotted."""
    import matplotlib.pyplot as plt

    families: dict[str, list[str]] = {}
    for label in results:
        families.setdefault(label.split()[0], []).append(label)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for k, (family, labels) in enumerate(families.items()):
        labels = sorted(labels, key=lambda label: results[label]["nfe"])
        nfe = [results[label]["nfe"] for label in labels]
        axes[0].plot(nfe, [results[label]["fid"] for label in labels], "o-", color=f"C{k}", label=family)
        axes[1].plot(nfe, [results[label]["seconds_per_1000"] for label in labels], "o-", color=f"C{k}", label=family)
    axes[0].axhline(real_fid, color="0.5", ls=":", label="real digits (floor)")
    axes[0].set_ylabel("MNIST-feature FID")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("seconds per 1,000 samples")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("denoiser calls per sample (NFE)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    rep.figure(fig, "quality_vs_speed", caption="quality and sampling time against the number of denoiser calls, "
                                                "per sampler")
    plt.close(fig)


def fid_curve_figure(rep, curves: dict, real_fid: float, caption: str = "") -> None:
    """"fid_vs_seconds": each `fid_curve` (label -> points) as FID against wall-clock seconds
    (training so far plus sampling 1,000 images), log-log, the floor dotted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, (label, points) in enumerate(curves.items()):
        ax.plot([p["seconds"] for p in points], [p["fid"] for p in points], "o-", color=f"C{k}", label=label)
        ax.annotate(f"{points[-1]['step']} steps", (points[-1]["seconds"], points[-1]["fid"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, color=f"C{k}")
    ax.axhline(real_fid, color="0.5", ls=":", label="real digits (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds: training so far + sampling 1,000 images")
    ax.set_ylabel("MNIST-feature FID")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    rep.figure(fig, "fid_vs_seconds", caption=caption or "FID during training against the seconds a run stopped "
                                                         "there would have cost (evaluations excluded)")
    plt.close(fig)

