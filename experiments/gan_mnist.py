"""A DCGAN on MNIST with each improved-training technique as a switch, and WGAN / WGAN-GP.

A variant is a loss followed by '+'-joined switches, e.g. `gan+fm+ls`:
  losses    gan (non-saturating), gan_minimax, wgan (weight clipping, RMSProp), wgan_gp
  switches  ls     one-sided label smoothing (real target 1 - label_smoothing)
            fm     feature matching on the discriminator's penultimate layer
            mbd    minibatch discrimination before the discriminator's output
            ha     historical averaging of both players' parameters (penalty weight
                   `historical_averaging`; the running averages live in the state's extras)
            vbn    virtual batch norm in the generator (its reference batch of latents is drawn
                   once at the start and kept in the state's extras) instead of batch norm
            noise  instance noise N(0, s^2) on real and generated images, s annealed linearly
                   from `instance_noise` to 0 over `noise_anneal_steps`
            r1     the zero-centred gradient penalty (r1_gamma / 2) E ||grad_x D(x)||^2 on real
                   images in the discriminator's loss (Mescheder et al. 2018)
            ema    samples (and scores) come from an exponential moving average of the
                   generator's weights (decay `generator_ema_decay`, with genjax.train.with_ema's
                   warm-up; Yazici et al. 2019): training is unchanged, the average smooths
                   out the generator's oscillation around the equilibrium
(Salimans et al. 2016; Arjovsky & Bottou 2017; Sonderby et al. 2017; Arjovsky et al. 2017;
Gulrajani et al. 2017.) Every variant uses the same DCGAN (`genjax.nn` DcganGenerator /
DcganDiscriminator, resize-convolutions in the generator), data, batch and number of generator
steps; each trains in its own subdirectory and resumes from its checkpoints.

The "lack of a metric" of GAN training is answered with the MNIST-feature FID and KID: Frechet
distance and kernel distance between features of the runtime's MNIST classifier
(`experiments/mnist_classifier.py`) for generated digits and for 1,000 held-out digits. They rank
models scored with the same classifier and are NOT comparable with Inception FIDs from papers;
`real_fid` (1,000 training digits against the held-out ones) is the floor. For the WGANs the
critic's Wasserstein estimate E f(x) - E f(G(z)) is plotted against steps beside the FID.

Offline, MNIST is the embedded 9,000-image training split (`genjax.data`).

Cost: `--quick` (gan+ema for 2,000 generator steps and WGAN-GP for 1,200, width 32) took 467 s
on an idle 2-core CPU in the tour: MNIST-feature FID 41.7 and 33.9 against a floor of 4.8,
digit-shaped samples of which roughly a third (DCGAN) to a half (WGAN-GP) are readable.
The default (ten variants, 3,000 steps, width 32; the WGANs take 5 critic steps per generator
step) is a few hours on such a CPU and minutes on a GPU; `--variants` picks a subset.

    python -m experiments.gan_mnist [--quick] [--variants gan,gan+fm,wgan_gp] [--steps N] [--workdir DIR]
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._framework import Built, Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    variants: tuple[str, ...] = ("gan", "gan+ls", "gan+fm", "gan+mbd", "gan+ha", "gan+vbn", "gan+noise", "gan+ema",
                                 "gan_minimax", "wgan", "wgan_gp")
    steps: int = 3_000  # generator updates
    # generator updates of the WGAN variants (each takes n_critic critic updates); 0: `steps`
    wasserstein_steps: int = 0
    batch_size: int = 64
    latent_dim: int = 64
    width: int = 32  # DCGAN base width (generator 2w -> w channels, discriminator w -> 2w)
    generator_kernel: int = 5  # the generator's convolutions are k x k (5: the DCGAN paper's; 3 made blotches)
    feature_dim: int = 128
    learning_rate: float = 2e-4  # GAN losses: Adam(b1 = 0.5) (Radford et al. 2016)
    wgan_learning_rate: float = 5e-5  # WGAN: RMSProp (Arjovsky et al. 2017)
    wgan_gp_learning_rate: float = 1e-4  # WGAN-GP: Adam(b1 = 0.5, b2 = 0.9)
    # each optimizer's learning rate cosine-decays to this fraction of its start over its updates
    # (the critic's: n_critic per generator step); 1: constant, as in the papers
    final_lr_fraction: float = 1.0
    n_critic: int = 5  # critic updates per generator update for the WGANs
    clip: float = 0.01
    gp_weight: float = 10.0
    gp_examples: int = 0  # WGAN-GP: the penalty on the first k pairs of each batch (GanOptions); 0: all
    label_smoothing: float = 0.1  # real target 0.9 (Salimans et al. 2016)
    historical_averaging: float = 1e-2
    instance_noise: float = 0.1
    noise_anneal_steps: int = 2_000
    generator_ema_decay: float = 0.999  # the `ema` switch's decay
    r1_gamma: float = 10.0  # the `r1` switch's gamma (Mescheder et al. 2018 use 10 for their image GANs)
    minibatch_kernels: int = 32
    minibatch_dim: int = 8
    vbn_reference_size: int = 64
    num_eval_samples: int = 1_000
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 100
    keep_checkpoints: int = 1

    def __post_init__(self):  # checked before the workdir is written
        from experiments._gan_common import parse_variant

        for v in self.variants:
            parse_variant(v)


# The tour's GAN chapter on a CPU: the DCGAN with generator weight averaging (`ema`) and WGAN-GP,
# at the default width with 5x5 kernels. WGAN-GP: 2 critic steps per generator step, its
# learning rate doubled (the default's 5 critic steps would take 2.5x as long), its penalty on 16
# of the 64 pairs of each batch (on a CPU the whole-batch penalty made a step 6x a DCGAN step) and
# 1,200 generator steps. Measured (1,000 samples, floor 4.8): gan+ema FID 53.5 at 1,500 steps and
# 41.6 at 2,000 (3,000 since the resize-convolutions run at the input's resolution, 3.5x faster);
# WGAN-GP 71.2 / 47.5 / 34.2 at 400 / 800 / 1,200.
QUICK = {"variants": ("gan+ema", "wgan_gp"), "steps": 3000, "wasserstein_steps": 1200, "n_critic": 2,
         "wgan_gp_learning_rate": 2e-4, "gp_examples": 16, "eval_every": 400, "checkpoint_every": 400, "log_every": 50,
         "noise_anneal_steps": 800}

# `--preset standard`, under an hour of a 2-core CPU: the quick pair trained longer. Measured
# (2026-12-02, 20,000 DCGAN steps, FID every 1,000): gan+ema is best at 9,000 steps (FID 21.5,
# 4.4x the floor 4.93) and then degrades (35.4 at 20,000: the constant learning rate), so the
# preset stops it there (its training is identical up to that step); WGAN-GP's 8,000 steps reached
# FID 9.7 (2.0x the floor), still improving. About 20 minutes together on the 2-core VM. A
# cosine decay instead (`--final-lr-fraction 0.05`, 15,000 steps; 2026-12-03) did not help the
# DCGAN: FID 28.2 / 25.1 / 26.4 / 26.5 at 5,000 / 8,000 / 12,000 / 15,000 steps (final score 25.4).
STANDARD = {**QUICK, "steps": 9_000, "wasserstein_steps": 8_000, "eval_every": 1_000, "checkpoint_every": 1_000,
            "log_every": 100, "noise_anneal_steps": 2_000}

GRID = 36  # samples shown per sample grid (6 x 6)


def generator_label(variant: str) -> str:
    """The closing comparison's name of a variant: "DCGAN gan+ema", "WGAN-GP", "WGAN+ls"."""
    from experiments._gan_common import parse_variant

    loss = parse_variant(variant)[0]
    if loss.startswith("gan"):
        return f"DCGAN {variant}"
    return {"wgan": "WGAN", "wgan_gp": "WGAN-GP"}[loss] + variant[len(loss):]


def variant_steps(cfg: Config, variant: str) -> int:
    """The generator updates of `variant`: `wasserstein_steps` for WGAN and WGAN-GP when set."""
    from experiments._gan_common import parse_variant

    wasserstein = parse_variant(variant)[0] in ("wgan", "wgan_gp")
    return cfg.wasserstein_steps if wasserstein and cfg.wasserstein_steps else cfg.steps


def learning_rate(cfg: Config, variant: str, network: Literal["generator", "discriminator"]):
    """The learning rate of one of `variant`'s networks: its loss's constant rate, or with
    `final_lr_fraction` < 1 an optax schedule cosine-decaying it to that fraction over the
    network's updates (the critic makes `n_critic` per generator step)."""
    from experiments._gan_common import GanOptions, network_learning_rate, parse_variant

    loss = parse_variant(variant)[0]
    lr = {"wgan": cfg.wgan_learning_rate, "wgan_gp": cfg.wgan_gp_learning_rate}.get(loss, cfg.learning_rate)
    options = GanOptions(loss, n_critic=cfg.n_critic if loss.startswith("wgan") else 1)
    return network_learning_rate(lr, options, network, variant_steps(cfg, variant), cfg.final_lr_fraction)


def build(cfg: Config, variant: str, dtype: str = "float32") -> Built:
    """A variant's networks (`model`: generator and discriminator), `init(key) -> TrainState`, the
    train step, `sample(generator_params, extras, key, n) -> [n, 28, 28, 1]` and its `GanOptions`.
    With `dtype="bfloat16"` both networks run in bfloat16 (`genjax.train.mixed_precision`:
    float32 master weights, gradients and losses)."""
    import jax
    import jax.numpy as jnp
    import optax

    from experiments._gan_common import GanOptions, gan_extras, images_to_float, make_gan_step, parse_variant
    from genjax import nn, train

    loss, switches = parse_variant(variant)
    wasserstein = loss in ("wgan", "wgan_gp")
    opts = GanOptions(
        loss,
        n_critic=cfg.n_critic if wasserstein else 1,
        clip=cfg.clip,
        gp_weight=cfg.gp_weight,
        gp_examples=cfg.gp_examples,
        label_smoothing=cfg.label_smoothing if "ls" in switches else 0.0,
        feature_matching="fm" in switches,
        historical_averaging=cfg.historical_averaging if "ha" in switches else 0.0,
        instance_noise=cfg.instance_noise if "noise" in switches else 0.0,
        noise_anneal_steps=cfg.noise_anneal_steps,
        r1_weight=cfg.r1_gamma if "r1" in switches else 0.0,
    )
    vbn = "vbn" in switches
    generator = nn.DcganGenerator(width=cfg.width, norm="virtual_batch" if vbn else "batch",
                                   kernel_size=cfg.generator_kernel)
    discriminator = nn.DcganDiscriminator(width=cfg.width, feature_dim=cfg.feature_dim,
                                           minibatch_kernels=cfg.minibatch_kernels if "mbd" in switches else 0,
                                           minibatch_dim=cfg.minibatch_dim)
    def make_tx(network):
        lr = learning_rate(cfg, variant, network)
        if loss == "wgan":
            return optax.rmsprop(lr)
        return optax.adam(lr, b1=0.5, b2=0.9) if loss == "wgan_gp" else optax.adam(lr, b1=0.5)

    apply_g = train.mixed_precision(generator.apply, dtype)
    apply_d = train.mixed_precision(discriminator.apply, dtype)

    def gen_fn(params, z, extras):
        return apply_g({"params": params}, z, extras.get("reference_z"))

    def disc_fn(params, x, with_features=False):
        return apply_d({"params": params}, x, with_features=with_features)

    ema = "ema" in switches

    def init(key):
        reference_z = jax.random.normal(jax.random.fold_in(key, 3), (cfg.vbn_reference_size, cfg.latent_dim)) if vbn else None
        z = jnp.zeros((2, cfg.latent_dim))
        g = generator.init(jax.random.fold_in(key, 0), z, reference_z)["params"]
        d = discriminator.init(jax.random.fold_in(key, 1), jnp.zeros((2, 28, 28, 1)))["params"]
        params = {"generator": g, "discriminator": d}
        extras = gan_extras(opts, params, reference_z)
        if ema:
            extras["ema_params"] = {"generator": jax.tree.map(jnp.copy, g)}
        tx = {"generator": make_tx("generator"), "discriminator": make_tx("discriminator")}
        return train.TrainState.create(params=params, tx=tx, key=jax.random.fold_in(key, 2), extras=extras)

    def sample(g_params, extras, key, n):
        return gen_fn(g_params, jax.random.normal(key, (n, cfg.latent_dim)), extras)

    def sampling_params(state):
        """The generator weights that make the samples: the average with `ema`, else the last."""
        return state.extras["ema_params"]["generator"] if ema else state.params["generator"]

    step = make_gan_step(gen_fn, disc_fn, cfg.latent_dim, opts, data_key="image", preprocess=images_to_float)
    if ema:
        step = with_generator_ema(step, cfg.generator_ema_decay)
    return Built(model={"generator": generator, "discriminator": discriminator}, init=init, step=step, sample=sample,
                 options=opts, apply_fn=sampling_params)


def with_generator_ema(step, decay: float):
    """`step`, then the EMA of the generator's weights in `extras["ema_params"]["generator"]`
    (`genjax.train.with_ema` on the generator alone: the discriminator is not averaged)."""
    from genjax import train

    def generator_only(state, batch, axis_name=None):
        return state, {}

    def averaged(state, batch, axis_name=None):
        state, metrics = step(state, batch, axis_name)
        # with_ema averages `params` into extras[slot]: give it the generator's as a view
        view = state.replace(params={"generator": state.params["generator"]})
        view, _ = train.with_ema(generator_only, decay)(view, batch, axis_name)
        return state.replace(extras=view.extras), metrics

    return averaged


def subdir_of(variant: str) -> str:
    return variant.replace("+", "_")


def run(ctx: Context) -> dict:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from experiments._features import fit_seconds, generator_record, mnist_evaluator
    from experiments._gan_common import ImageSource, parse_variant
    from genjax import data, report, train

    cfg: Config = ctx.config
    for v in cfg.variants:
        parse_variant(v)  # fail before training anything
    train_ds = data.load_images("mnist", "train", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"data: {train_ds.description} ({train_ds.num_examples} images)")
    evaluator = mnist_evaluator(ctx, data_source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"MNIST-feature FID floor (train vs held-out digits): {evaluator.real_fid:.3f}")

    results = {}
    for variant in cfg.variants:
        built = build(cfg, variant)
        opts = built.options
        sub = subdir_of(variant)
        (ctx.workdir / sub).mkdir(parents=True, exist_ok=True)
        draw = train.jit(lambda p, e, k, sample=built.sample: sample(p, e, k, cfg.num_eval_samples))
        eval_key = jax.random.fold_in(jax.random.key(cfg.seed), 0xF1D)  # the same z at every evaluation

        def eval_fn(state, draw=draw, sub=sub, eval_key=eval_key):
            images = np.asarray(draw(built.apply_fn(state), state.extras, eval_key))
            np.save(ctx.workdir / sub / f"grid_{int(state.step):06d}.npy", images[:GRID])
            kid, _ = evaluator.kid(images)
            return {"fid": evaluator.fid(images), "kid": kid}

        loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                               process_index=jax.process_index(), process_count=jax.process_count())
        steps = variant_steps(cfg, variant)
        ctx.log(f"{variant}: {steps} generator steps" + (f", {opts.n_critic} critic steps each" if opts.n_critic > 1 else ""))
        result = ctx.fit(built.init(jax.random.key(cfg.seed)), built.step, ImageSource(loader, draws=opts.n_critic),
                         subdir=sub, eval_fn=eval_fn, eval_every=cfg.eval_every, num_steps=steps)
        # the final samples, timed (compiled ahead, waited for): the sampling cost of the closing comparison
        (images,), sample_seconds = train.time_compiled(
            lambda p, e, k, sample=built.sample: sample(p, e, k, cfg.num_eval_samples),
            [(built.apply_fn(result.state), result.state.extras, jax.random.fold_in(jax.random.key(cfg.seed), 0x5A3))])
        images = np.asarray(images)
        np.save(ctx.workdir / f"samples_{sub}.npy", images)
        scores = evaluator.scores(images)
        kid = scores["kid"]
        results[variant] = {
            **scores,
            "steps_per_s": train.steps_per_second(result.history),
            "train_seconds": fit_seconds(result, ctx.workdir / sub / "metrics.jsonl"),
            "seconds_per_1000": sample_seconds / cfg.num_eval_samples * 1000,
            "params_digest": train.digest(result.state),
        }
        ctx.metrics.write({"variant": variant, **results[variant]})
        ctx.log(f"{variant}: MNIST-feature FID {results[variant]['fid']:.3f}, KID {kid:.4f}")

    best = min(results, key=lambda v: results[v]["fid"])
    np.save(ctx.workdir / "samples.npy", np.load(ctx.workdir / f"samples_{subdir_of(best)}.npy"))

    # figures ---------------------------------------------------------------------------------
    rep = ctx.report
    rep.text(f"Data: {train_ds.description}. DCGAN width {cfg.width}, latent {cfg.latent_dim}, batch {cfg.batch_size}, "
             f"{cfg.steps} generator steps per variant"
             + (f" ({cfg.wasserstein_steps} for the WGANs, each with {cfg.n_critic} critic steps)"
                if cfg.wasserstein_steps else "") + ". Scores: MNIST-feature FID/KID against 1,000 held-out digits "
             f"(classifier features, not Inception: not comparable with published FIDs); floor (real training "
             f"digits): FID {evaluator.real_fid:.3f}.")
    histories = {v: report.read_jsonl(ctx.workdir / subdir_of(v) / "metrics.jsonl") for v in cfg.variants}
    grids = {v: sorted((ctx.workdir / subdir_of(v)).glob("grid_*.npy")) for v in cfg.variants}
    cols = max(len(g) for g in grids.values())
    fig, axes = plt.subplots(len(cfg.variants), cols, figsize=(1.7 * cols, 1.8 * len(cfg.variants)), squeeze=False)
    for i, v in enumerate(cfg.variants):
        for j in range(cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(grids[v]):
                ax.imshow(report.image_grid(np.load(grids[v][j]), rows=6, cols=GRID // 6), cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(f"{v} @ {int(grids[v][j].stem.split('_')[1])}", fontsize=7)
    fig.tight_layout()
    rep.figure(fig, "sample_grids", caption="the same 36 latent vectors decoded during training (rows: variants)")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for k, v in enumerate(cfg.variants):
        ev = [(r["step"], r["eval/fid"], r["eval/kid"]) for r in histories[v] if "eval/fid" in r]
        if ev:
            s, f, kd = zip(*ev)
            axes[0].plot(s, f, "o-", ms=3, color=f"C{k % 10}", label=v)
            axes[1].plot(s, kd, "o-", ms=3, color=f"C{k % 10}", label=v)
    axes[0].axhline(evaluator.real_fid, color="k", ls=":", label="real digits (floor)")
    axes[0].set_yscale("log")
    axes[0].set_title("MNIST-feature FID")
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_title("MNIST-feature KID")
    for ax in axes:
        ax.set_xlabel("generator step")
        ax.legend(fontsize=7)
    rep.figure(fig, "fid_kid", caption="sample quality during training, by variant")

    wgans = [v for v in cfg.variants if parse_variant(v)[0] in ("wgan", "wgan_gp")]
    if wgans:
        fig, axes = plt.subplots(1, len(wgans), figsize=(6 * len(wgans), 4), squeeze=False)
        for ax, v in zip(axes[0], wgans):
            h = histories[v]
            ax.plot([r["step"] for r in h], [r["wasserstein"] for r in h], color="C0")
            ax.set_ylabel("critic's Wasserstein estimate", color="C0")
            ax.set_xlabel("generator step")
            ev = [(r["step"], r["eval/fid"]) for r in h if "eval/fid" in r]
            if ev:
                ax2 = ax.twinx()
                ax2.plot(*zip(*ev), "o-", color="C3")
                ax2.set_ylabel("MNIST-feature FID", color="C3")
            ax.set_title(v)
        fig.tight_layout()
        rep.figure(fig, "wasserstein_vs_fid",
                   caption="WGAN: the critic's estimate E f(x) - E f(G(z)) (per logging interval) beside the FID")

    rep.table(["variant", "MNIST-feature FID", "KID", "KID std", "precision", "recall", "density", "coverage",
               "steps/s", "train seconds"],
              [(v, r["fid"], r["kid"], r["kid_std"], r["precision"], r["recall"], r["density"], r["coverage"],
                r["steps_per_s"], r["train_seconds"]) for v, r in results.items()]
              + [("real training digits (floor)", evaluator.real_fid, "-", "-",
                  *(evaluator.real_prdc.get(k, "-") for k in ("precision", "recall", "density", "coverage")), "-", "-")],
              caption=f"final scores ({cfg.num_eval_samples} samples); precision/recall (fidelity/diversity) and "
                      "density/coverage on the same classifier features, k = 3 (genjax.metrics.prdc)")

    import hashlib

    return {
        "params_digest": hashlib.sha256("".join(r["params_digest"] for r in results.values()).encode()).hexdigest(),
        "best_variant": best,
        "real_fid": evaluator.real_fid,
        **{f"{v}/fid": r["fid"] for v, r in results.items()},
        **{f"{v}/kid": r["kid"] for v, r in results.items()},
        **{f"{v}/{k}": r[k] for v, r in results.items() for k in ("precision", "recall", "density", "coverage")},
        "real_prdc": evaluator.real_prdc,
        "dataset": train_ds.as_dict(),
        "generators": [generator_record(generator_label(v), fid=r["fid"],
                                        kid=r["kid"], train_seconds=r["train_seconds"],
                                        seconds_per_1000=r["seconds_per_1000"], real_fid=evaluator.real_fid,
                                        num_samples=cfg.num_eval_samples, samples=f"samples_{subdir_of(v)}.npy",
                                        scores=r)
                       for v, r in results.items()],
    }


EXPERIMENT = Experiment(
    name="gan_mnist",
    title="DCGAN on MNIST: the improved-training techniques as switches, WGAN and WGAN-GP, scored by MNIST-feature FID",
    description="Label smoothing, feature matching, minibatch discrimination, historical averaging, virtual batch "
                "norm, instance noise, WGAN(-GP); FID/KID on classifier features during training.",
    config=Config,
    quick=QUICK,
    presets={"standard": STANDARD},
    run=run,
    trains=True,
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
