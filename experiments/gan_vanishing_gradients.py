"""Why the minimax GAN's generator stops learning: perfect discriminators and vanishing gradients.

(a) Low-dimensional supports (Arjovsky & Bottou 2017, theorems 2.1-2.3). Two distributions on
    k-dimensional affine pieces (k << d) of R^d, x = A u + b with u ~ U[-1, 1]^k, have disjoint
    supports almost surely, so a discriminator can separate them perfectly: a fresh MLP reaches
    accuracy 1, its loss goes to 0, and the gradient the generator receives through it,
    grad_x log(1 - D(x)) at generated points, vanishes. A full-dimensional control (two
    overlapping Gaussians N(0, I) and N(m, I)) keeps the accuracy below 1 and the gradients alive.

(b) The Arjovsky-Bottou protocol (their figures 2 and 3): a DCGAN is trained on MNIST for a few
    epochs; its generator is frozen at each of `generator_epochs`; a fresh discriminator is then
    trained against each frozen generator (all of them as one program, `fit(replicas=True)`), and every step
    records the norm of the gradient of the generator's cost with respect to the generator's
    parameters: the minimax E log(1 - D(G(z))) (it vanishes, on a log scale, as the
    discriminator improves), the non-saturating -E log D(G(z)) (it does not vanish but grows and
    fluctuates), and beside them, for a fresh WGAN critic (weight clipping) trained the same way,
    -E f(G(z)) (it stays informative).

`steps` is the number of discriminator iterations of (b) (4,000 in the paper); the generator
trains for max(generator_epochs) epochs first; the gradient norms are measured every
`measure_every` iterations (each logged value is the mean of an interval's measurements).
Everything resumes from its checkpoints. Cost: `--quick` (the generator after 1 epoch, 200
discriminator iterations, width 16) took 52 s on an idle 2-core CPU (with generators after 1
and 2 epochs and 300 iterations: 118 s); the default
(25 epochs of DCGAN training, then 4,000 iterations against 3 snapshots) one to two hours.

    python -m experiments.gan_vanishing_gradients [--quick] [--steps N] [--generator-epochs 1,10,25]
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from experiments._framework import Context, Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    # (a) low-dimensional supports
    ambient_dim: int = 32
    manifold_dims: tuple[int, ...] = (1, 2, 8)
    control_shift: float = 1.0  # the full-dimensional control: N(0, I) against N(shift / sqrt(d) * 1, I)
    supports_steps: int = 2_000
    supports_batch_size: int = 256
    supports_learning_rate: float = 1e-3
    # (b) the Arjovsky-Bottou protocol on MNIST
    data_source: Literal["auto", "tfds", "embedded"] = "auto"
    data_dir: str | None = None
    generator_epochs: tuple[int, ...] = (1, 10, 25)
    steps: int = 4_000  # discriminator iterations against each frozen generator
    batch_size: int = 64
    latent_dim: int = 64
    width: int = 32
    learning_rate: float = 2e-4  # DCGAN training and the fresh discriminators: Adam(b1 = 0.5)
    critic_learning_rate: float = 5e-5  # the WGAN critic: RMSProp, weights clipped to +-clip
    clip: float = 0.01
    # the generator's gradient norms are measured every `measure_every` discriminator steps;
    # steps, checkpoint_every and log_every must be multiples of it
    measure_every: int = 5
    checkpoint_every: int = 1_000
    log_every: int = 50
    keep_checkpoints: int = 1

    def __post_init__(self):  # checked before the workdir is written
        for name in ("steps", "checkpoint_every", "log_every"):
            if self.measure_every >= 1 and getattr(self, name) % self.measure_every:
                raise ValueError(f"--{name.replace('_', '-')} ({getattr(self, name)}) must be a multiple of "
                                 f"--measure-every ({self.measure_every})")


# The tour's lesson in under a minute: one generator snapshot (after 1 epoch) and 200
# discriminator iterations show the minimax gradient falling tenfold while the others do not.
QUICK = {"manifold_dims": (1, 8), "supports_steps": 400, "generator_epochs": (1,), "steps": 200, "width": 16,
         "checkpoint_every": 100, "log_every": 25}


# ------------------------------------------------------------------------------ (a) supports


def supports_experiment(cfg: Config):
    """For each manifold dimension (and the full-dimensional control): per-step accuracy, loss and
    the mean gradient norms wrt generated points of the minimax and non-saturating generator
    losses, while a fresh discriminator trains. Returns {name: dict of [steps] arrays}."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from genjax import gan, nn

    d = cfg.ambient_dim
    disc = nn.MlpDiscriminator(hidden=128, depth=2)
    tx = optax.adam(cfg.supports_learning_rate)
    b = cfg.supports_batch_size

    def make_sampler(k, key):
        if k >= d:  # the full-dimensional control
            shift = cfg.control_shift / np.sqrt(d) * jnp.ones(d)
            return (lambda key: jax.random.normal(key, (b, d)),
                    lambda key: shift + jax.random.normal(key, (b, d)))
        ka, kb, kc, kd = jax.random.split(key, 4)
        a_r, a_g = jax.random.normal(ka, (k, d)), jax.random.normal(kb, (k, d))
        b_r, b_g = 0.5 * jax.random.normal(kc, (d,)), 0.5 * jax.random.normal(kd, (d,))
        return (lambda key: jax.random.uniform(key, (b, k), minval=-1, maxval=1) @ a_r + b_r,
                lambda key: jax.random.uniform(key, (b, k), minval=-1, maxval=1) @ a_g + b_g)

    def run_one(k, key):
        sample_r, sample_g = make_sampler(k, jax.random.fold_in(key, 0))
        params = disc.init(jax.random.fold_in(key, 1), jnp.zeros((1, d)))["params"]

        def body(carry, step_key):
            params, opt_state = carry
            kr, kg = jax.random.split(step_key)
            real, fake = sample_r(kr), sample_g(kg)

            def loss_fn(p):
                rl, fl = disc.apply({"params": p}, real), disc.apply({"params": p}, fake)
                return gan.discriminator_loss(rl, fl), (rl, fl)

            (loss, (rl, fl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            # the gradients a generator would receive at its samples x = G(z), per sample
            per_x = lambda f: jax.vmap(jax.grad(lambda x: f(disc.apply({"params": params}, x[None])[0])))(fake)
            g_minimax = per_x(lambda l: -jax.nn.softplus(l))  # log(1 - D(x))
            g_nonsat = per_x(lambda l: jax.nn.softplus(-l))  # -log D(x)
            updates, opt_state = tx.update(grads, opt_state, params)
            metrics = {
                "accuracy": 0.5 * (jnp.mean(rl > 0) + jnp.mean(fl < 0)),
                "loss": loss,
                "grad_minimax": jnp.mean(jnp.linalg.norm(g_minimax, axis=-1)),
                "grad_nonsaturating": jnp.mean(jnp.linalg.norm(g_nonsat, axis=-1)),
            }
            return (optax.apply_updates(params, updates), opt_state), metrics

        keys = jax.random.split(jax.random.fold_in(key, 2), cfg.supports_steps)
        _, metrics = jax.lax.scan(body, (params, tx.init(params)), keys)
        return metrics

    out = {}
    for k in (*cfg.manifold_dims, d):
        name = f"k = {k} in R^{d}" if k < d else f"full-dimensional control (R^{d})"
        out[name] = jax.device_get(jax.jit(run_one, static_argnums=0)(k, jax.random.key(cfg.seed)))
    return out


# ------------------------------------------------------------------------------ (b) Arjovsky-Bottou


def dcgan(cfg: Config):
    from genjax import nn

    return nn.DcganGenerator(width=cfg.width, norm="batch"), nn.DcganDiscriminator(width=cfg.width)


def train_generator_snapshots(ctx: Context, train_ds) -> tuple[list, int]:
    """Trains a DCGAN (non-saturating loss) and returns the generator's parameters after each of
    `generator_epochs` epochs (saved as `generator_epoch<e>.msgpack`)."""
    import jax
    import jax.numpy as jnp
    import optax

    from experiments._gan_common import GanOptions, ImageSource, images_to_float, make_gan_step
    from genjax import data, train

    cfg: Config = ctx.config
    generator, discriminator = dcgan(cfg)
    loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed,
                                           process_index=jax.process_index(), process_count=jax.process_count())
    steps_per_epoch = loader.steps_per_epoch
    key = jax.random.key(cfg.seed)
    g = generator.init(jax.random.fold_in(key, 0), jnp.zeros((2, cfg.latent_dim)))["params"]
    d = discriminator.init(jax.random.fold_in(key, 1), jnp.zeros((2, 28, 28, 1)))["params"]
    tx = {"generator": optax.adam(cfg.learning_rate, b1=0.5), "discriminator": optax.adam(cfg.learning_rate, b1=0.5)}
    state = train.TrainState.create(params={"generator": g, "discriminator": d}, tx=tx, key=jax.random.fold_in(key, 2))
    step = make_gan_step(lambda p, z, e: generator.apply({"params": p}, z),
                         lambda p, x, with_features=False: discriminator.apply({"params": p}, x, with_features=with_features),
                         cfg.latent_dim, GanOptions("gan"), data_key="image", preprocess=images_to_float)
    snapshots = []
    for epochs in sorted(cfg.generator_epochs):
        path = ctx.workdir / f"generator_epoch{epochs}.msgpack"
        if not path.exists():
            ctx.log(f"training the DCGAN to epoch {epochs} ({epochs * steps_per_epoch} steps)")
            result = ctx.fit(state, step, ImageSource(loader), subdir="dcgan", num_steps=epochs * steps_per_epoch,
                             checkpoint_every=steps_per_epoch)
            state = result.state
            if ctx.is_main_process:
                train.save_params(path, state.params["generator"])
        snapshots.append(jax.tree.map(jnp.asarray, train.load_params(path)))
    return snapshots, steps_per_epoch


def global_norm(tree):
    """sqrt of the sum of squares of all leaves of a pytree."""
    import jax
    import jax.numpy as jnp

    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def make_probe_step(cfg: Config, critic: bool):
    """A discriminator (or WGAN critic) step against a frozen generator (in `extras`), which also
    measures the generator's gradient norms. Metrics: d_loss, accuracy (or the Wasserstein
    estimate) and grad_minimax / grad_nonsaturating (or grad_wgan)."""
    import jax
    import jax.numpy as jnp

    from experiments._gan_common import images_to_float
    from genjax import gan

    generator, discriminator = dcgan(cfg)
    gen = lambda p, z: generator.apply({"params": p}, z)  # noqa: E731
    disc = lambda p, x: discriminator.apply({"params": p}, x)  # noqa: E731

    def step(state, batch, axis_name=None):
        real = images_to_float(batch["image"][0])  # [B, 28, 28, 1]
        kz, km = jax.random.split(state.step_key())
        g_params = state.extras["generator"]
        fake = gen(g_params, jax.random.normal(kz, (real.shape[0], cfg.latent_dim)))

        def loss_fn(p):
            rl, fl = disc(p, real), disc(p, fake)
            loss = gan.wasserstein_critic_loss(rl, fl) if critic else gan.discriminator_loss(rl, fl)
            return loss, (rl, fl)

        (loss, (rl, fl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        z = jax.random.normal(km, (real.shape[0], cfg.latent_dim))

        def measure(_):
            if critic:
                g = jax.grad(lambda gp: gan.wasserstein_generator_loss(disc(state.params, gen(gp, z))))(g_params)
                return {"grad_wgan": global_norm(g)}

            def costs(gp):
                logits = disc(state.params, gen(gp, z))
                return gan.generator_loss(logits, saturating=True), gan.generator_loss(logits)

            (c_mm, c_ns), vjp = jax.vjp(costs, g_params)
            (g_mm,) = vjp((jnp.ones_like(c_mm), jnp.zeros_like(c_ns)))
            (g_ns,) = vjp((jnp.zeros_like(c_mm), jnp.ones_like(c_ns)))
            return {"grad_minimax": global_norm(g_mm), "grad_nonsaturating": global_norm(g_ns)}

        # Measured on every `measure_every`-th step only (a real branch: replicas share the step
        # counter, see `genjax.train.vmap_replicas`), scaled so that a logging interval's mean is
        # the mean of its measurements.
        shapes = jax.eval_shape(measure, None)
        norms = jax.lax.cond(state.step % cfg.measure_every == 0, measure,
                             lambda _: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), None)
        norms = {k: v * cfg.measure_every for k, v in norms.items()}
        if critic:
            metrics = {"d_loss": loss, "wasserstein": -loss, **norms}
        else:
            metrics = {"d_loss": loss, "accuracy": 0.5 * (jnp.mean(rl > 0) + jnp.mean(fl < 0)), **norms}
        state = state.apply_gradients(grads)
        if critic:
            state = state.replace(params=gan.clip_weights(state.params, cfg.clip))
        return state, metrics

    return step


def probe(ctx: Context, train_ds, snapshots, critic: bool):
    """Trains a fresh discriminator (critic) against every frozen generator, all of them as one
    program (`fit(replicas=True)`, one replica per snapshot, the same real batches for every
    replica); returns the fit result."""
    import jax
    import jax.numpy as jnp
    import optax

    from experiments._gan_common import ImageSource
    from genjax import data, train

    cfg: Config = ctx.config
    _, discriminator = dcgan(cfg)
    tx = optax.rmsprop(cfg.critic_learning_rate) if critic else optax.adam(cfg.learning_rate, b1=0.5)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *snapshots)

    def init(key, g_params):
        d = discriminator.init(jax.random.fold_in(key, 1), jnp.zeros((2, 28, 28, 1)))["params"]
        if critic:
            d = jax.tree.map(lambda w: jnp.clip(w, -cfg.clip, cfg.clip), d)
        return train.TrainState.create(params=d, tx=tx, key=jax.random.fold_in(key, 2), extras={"generator": g_params})

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(cfg.seed + 1), i))(jnp.arange(len(snapshots)))
    state = jax.vmap(init)(keys, stacked)  # leading replica axis: one state per snapshot
    loader = data.ArrayLoader.from_dataset(train_ds, cfg.batch_size, cfg.seed + 1,
                                           process_index=jax.process_index(), process_count=jax.process_count())
    # one source: its batches are shared by every replica (snapshot)
    result = ctx.fit(state, make_probe_step(cfg, critic), ImageSource(loader), replicas=True, batch_axis=1,
                     subdir="critic" if critic else "discriminator")
    return result


def run(ctx: Context) -> dict:
    import hashlib
    import math

    import matplotlib.pyplot as plt
    import numpy as np

    from genjax import data, report, train

    cfg: Config = ctx.config
    for name in ("steps", "checkpoint_every", "log_every"):
        if getattr(cfg, name) % cfg.measure_every:
            raise ValueError(f"{name}={getattr(cfg, name)} must be a multiple of measure_every={cfg.measure_every}")
    rep = ctx.report

    # (a) ---------------------------------------------------------------------------------------
    ctx.log("(a) discriminators on low-dimensional supports")
    sup = supports_experiment(cfg)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    steps = np.arange(1, cfg.supports_steps + 1)
    rows_a = []
    for i, (name, m) in enumerate(sup.items()):
        smooth = lambda v: np.convolve(v, np.ones(20) / 20, mode="valid")  # noqa: E731
        axes[0].plot(steps[19:], smooth(m["accuracy"]), color=f"C{i}", label=name)
        axes[1].plot(steps, m["loss"], color=f"C{i}", label=name)
        axes[2].plot(steps, m["grad_minimax"], color=f"C{i}", label=f"{name}")
        axes[2].plot(steps, m["grad_nonsaturating"], color=f"C{i}", ls=":", lw=1)
        tail = slice(-max(1, cfg.supports_steps // 20), None)
        rows_a.append((name, float(np.mean(m["accuracy"][tail])), float(np.mean(m["loss"][tail])),
                       float(np.mean(m["grad_minimax"][:10])), float(np.mean(m["grad_minimax"][tail])),
                       float(np.mean(m["grad_nonsaturating"][tail]))))
    axes[0].set_title("discriminator accuracy (moving average)")
    axes[1].set_title("discriminator loss -V(G, D)")
    axes[1].set_yscale("log")
    axes[2].set_title("||grad_x|| at generated points: log(1-D) solid, -log D dotted")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("discriminator step")
    axes[0].legend(fontsize=8)
    rep.figure(fig, "low_dimensional_supports",
               caption="distributions on k-dimensional pieces of R^d are perfectly separated; the minimax "
                       "generator's gradient vanishes. The full-dimensional control stays below accuracy 1.")
    bayes = 0.5 * (1.0 + math.erf(cfg.control_shift / 2.0 / math.sqrt(2.0)))  # Phi(||m|| / 2)
    rep.table(["supports", "final accuracy", "final loss", "minimax gradient, first 10 steps",
               "minimax gradient, final", "non-saturating gradient, final"], rows_a,
              caption="(a) a fresh discriminator on two distributions (final = mean of the last 5% of steps); "
                      f"the control's Bayes-optimal accuracy is Phi(||m|| / 2) = {bayes:.4f}")

    # (b) ---------------------------------------------------------------------------------------
    train_ds = data.load_images("mnist", "train", source=cfg.data_source, data_dir=cfg.data_dir)
    ctx.log(f"(b) data: {train_ds.description}")
    snapshots, steps_per_epoch = train_generator_snapshots(ctx, train_ds)
    epochs = sorted(cfg.generator_epochs)
    ctx.log(f"(b) fresh discriminators against {len(epochs)} frozen generators, {cfg.steps} steps")
    d_result = probe(ctx, train_ds, snapshots, critic=False)
    ctx.log(f"(b) fresh WGAN critics against {len(epochs)} frozen generators, {cfg.steps} steps")
    c_result = probe(ctx, train_ds, snapshots, critic=True)
    dh = report.read_jsonl(ctx.workdir / "discriminator" / "metrics.jsonl")
    ch = report.read_jsonl(ctx.workdir / "critic" / "metrics.jsonl")

    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    ds = [r["step"] for r in dh]
    cs = [r["step"] for r in ch]
    for i, e in enumerate(epochs):
        axes[0].plot(ds, [r["grad_minimax"][i] for r in dh], color=f"C{i}", label=f"generator after {e} epoch(s)")
        axes[1].plot(ds, [r["grad_nonsaturating"][i] for r in dh], color=f"C{i}", label=f"{e} epoch(s)")
        axes[2].plot(cs, [r["grad_wgan"][i] for r in ch], color=f"C{i}", label=f"{e} epoch(s)")
        axes[3].plot(ds, [r["accuracy"][i] for r in dh], color=f"C{i}", label=f"{e} epoch(s)")
    titles = ("minimax E log(1 - D(G(z)))", "non-saturating -E log D(G(z))", "WGAN -E f(G(z)) (clipped critic)",
              "discriminator accuracy")
    for ax, t in zip(axes, titles):
        ax.set_title(t)
        ax.set_xlabel("discriminator iterations")
    for ax in axes[:3]:
        ax.set_yscale("log")
        ax.set_ylabel("||gradient wrt generator params||")
    axes[0].legend(fontsize=8)
    rep.figure(fig, "arjovsky_bottou",
               caption="a fresh discriminator trained against frozen DCGAN generators (means over each logging "
                       "interval): the minimax generator's gradient vanishes as the discriminator improves; the "
                       "non-saturating one does not; the WGAN critic's stays informative (Arjovsky & Bottou 2017, "
                       "figures 2-3)")
    rows_b, summary_b = [], {}
    for i, e in enumerate(epochs):
        first, last = dh[0], dh[-1]
        row = (e, first["grad_minimax"][i], last["grad_minimax"][i], first["grad_nonsaturating"][i],
               last["grad_nonsaturating"][i], ch[0]["grad_wgan"][i], ch[-1]["grad_wgan"][i], last["accuracy"][i])
        rows_b.append(row)
        summary_b[f"epoch{e}"] = dict(zip(("epochs", "minimax_first", "minimax_last", "nonsaturating_first",
                                           "nonsaturating_last", "wgan_first", "wgan_last", "accuracy_last"), row))
    rep.table(["generator epochs", "minimax grad, first interval", "minimax grad, last", "non-saturating, first",
               "non-saturating, last", "WGAN, first", "WGAN, last", "D accuracy, last"], rows_b,
              caption=f"(b) gradient norms at the start and the end of {cfg.steps} discriminator iterations "
                      f"({steps_per_epoch} steps per epoch of {train_ds.num_examples} digits)")

    digests = [train.params_digest(s) for s in snapshots] + [train.digest(d_result.state), train.digest(c_result.state)]
    return {
        "params_digest": hashlib.sha256("".join(digests).encode()).hexdigest(),
        "control_bayes_accuracy": bayes,
        "supports": {r[0]: {"accuracy": r[1], "loss": r[2], "grad_minimax_first": r[3], "grad_minimax_last": r[4],
                            "grad_nonsaturating_last": r[5]} for r in rows_a},
        "arjovsky_bottou": summary_b,
        "dataset": train_ds.as_dict(),
    }


EXPERIMENT = Experiment(
    name="gan_vanishing_gradients",
    title="Vanishing gradients: perfect discriminators on low-dimensional supports, and the Arjovsky-Bottou protocol",
    description="Discriminator accuracy -> 1 on disjoint low-dimensional supports; generator gradient norms under "
                "the minimax, non-saturating and WGAN losses against a fresh discriminator.",
    config=Config,
    quick=QUICK,
    run=run,
    trains=True,
)

if __name__ == "__main__":
    raise SystemExit(EXPERIMENT.main())
