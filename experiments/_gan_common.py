"""What the GAN experiments share: training options, the GAN state, the alternating train step,
batch sources (a pure (seed, step) sampler of the 2-D toys, images with one batch per critic
step), and the variant names of the MNIST experiment. Seeds trained as one program are
`genjax.train.fit(replicas=True)` with one source per seed.

`make_gan_step(gen_fn, disc_fn, latent_dim, options)` builds one training step of every GAN
variant of the chapter from `genjax.gan`'s pure losses: the minimax and non-saturating GAN, WGAN
(weight clipping) and WGAN-GP, each optionally with one-sided label smoothing, feature matching,
historical averaging, annealed instance noise, packing (PacGAN) and `n_critic` discriminator
updates per generator update. Non-gradient state (the historical averages, the virtual-batch-norm
reference batch) lives in `state.extras`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import numpy as np

Loss = Literal["gan", "gan_minimax", "wgan", "wgan_gp"]
LOSSES = ("gan", "gan_minimax", "wgan", "wgan_gp")


@dataclasses.dataclass(frozen=True)
class GanOptions:
    """One GAN variant: the loss and the improved-training switches.

    Attributes:
      loss: "gan" (non-saturating generator), "gan_minimax" (saturating generator), "wgan"
        (critic with weight clipping), "wgan_gp" (critic with gradient penalty).
      n_critic: discriminator updates per generator update (each on a fresh real batch).
      clip: the WGAN weight-clipping bound c.
      gp_weight: the WGAN-GP lambda.
      gp_examples: the penalty's expectation over interpolates is estimated on the first
        `gp_examples` pairs of each batch (an unbiased Monte Carlo estimate of the same
        E[(||grad critic(x_hat)|| - 1)^2], with more variance); 0: the whole batch, as Gulrajani
        et al. On a CPU the penalty's double backpropagation costs several critic steps, so a
        quarter of the batch makes a WGAN-GP step about 2x cheaper.
      label_smoothing: one-sided label smoothing a (real target 1 - a).
      feature_matching: the generator minimizes ||E f(x) - E f(G(z))||^2 on the discriminator's
        feature layer instead of its adversarial loss.
      historical_averaging: the weight of the historical-averaging penalty (both players); 0: off.
      instance_noise: the initial instance-noise std (annealed linearly to 0 over
        `noise_anneal_steps`); 0: off.
      noise_anneal_steps: see `instance_noise`.
      pack: PacGAN's packing degree m (the discriminator sees m samples at once); 1: off.
      r1_weight: gamma of the zero-centred R1 penalty on real data (Mescheder et al. 2018): the
        discriminator's loss gains (gamma / 2) E ||grad_x D(x)||^2; 0: off.
    """

    loss: Loss = "gan"
    n_critic: int = 1
    clip: float = 0.01
    gp_weight: float = 10.0
    gp_examples: int = 0
    label_smoothing: float = 0.0
    feature_matching: bool = False
    historical_averaging: float = 0.0
    instance_noise: float = 0.0
    noise_anneal_steps: int = 1
    pack: int = 1
    r1_weight: float = 0.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.n_critic < 1 or self.pack < 1:
            raise ValueError(f"n_critic and pack must be >= 1, got {self.n_critic}, {self.pack}")
        if self.gp_examples < 0:
            raise ValueError(f"gp_examples must be >= 0 (0: the whole batch), got {self.gp_examples}")

    @property
    def wasserstein(self) -> bool:
        return self.loss in ("wgan", "wgan_gp")


def network_learning_rate(lr: float, options: GanOptions, network: Literal["generator", "discriminator"],
                          generator_steps: int, final_fraction: float = 1.0):
    """The learning rate of one of a GAN's networks: `lr` itself when `final_fraction` is 1, else an
    optax schedule cosine-decaying it to `final_fraction * lr` over that network's own updates (one
    per generator step for the generator, `options.n_critic` per generator step for the
    discriminator; one schedule over the generator's steps would take a WGAN critic to its final
    rate after 1 / n_critic of training)."""
    import optax

    if network not in ("generator", "discriminator"):
        raise ValueError(f"network must be 'generator' or 'discriminator', got {network!r}")
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
    if final_fraction == 1.0:
        return lr
    updates = generator_steps * (options.n_critic if network == "discriminator" else 1)
    return optax.cosine_decay_schedule(lr, max(updates, 1), final_fraction)


def gan_extras(options: GanOptions, params: dict, reference_z: Any = None) -> dict:
    """The non-gradient state slots of a GAN state for `options` (fixed at creation)."""
    from genjax import gan

    extras = {}
    if options.historical_averaging:
        extras["ha_generator"] = gan.historical_average_init(params["generator"])
        extras["ha_discriminator"] = gan.historical_average_init(params["discriminator"])
    if reference_z is not None:
        extras["reference_z"] = reference_z
    return extras


def make_gan_step(
    gen_fn: Callable[[Any, Any, dict], Any],
    disc_fn: Callable[..., Any],
    latent_dim: int,
    options: GanOptions,
    data_key: str = "x",
    preprocess: Callable[[Any], Any] | None = None,
):
    """The train step `(state, batch, axis_name=None) -> (state, metrics)` of a GAN variant.

    Args:
      gen_fn: `(generator_params, z [B, latent_dim], extras) -> samples [B, ...]`.
      disc_fn: `(discriminator_params, x [B', ...], with_features=False) -> logits [B']`, or
        `(logits, features)` with features.
      latent_dim: the dimension of z ~ N(0, I).
      options: the variant.
      data_key: the batch entry holding real samples, shaped [n_critic, B, ...].
      preprocess: applied to each real batch (e.g. uint8 images -> floats).

    One step: `n_critic` discriminator updates (each with a fresh real batch and fresh z; clipped
    after each update for WGAN), then one generator update, then the historical averages.
    Metrics: d_loss, g_loss, and d_real / d_fake (mean D) for the GAN losses or the critic's
    Wasserstein estimate E f(x) - E f(G(z)) for the WGAN losses.
    """
    import jax
    import jax.numpy as jnp

    from genjax import gan, train

    o = options

    def critic_inputs(x, step, key):
        if o.instance_noise:
            x = gan.instance_noise(key, x, gan.annealed_noise_std(step, o.instance_noise, o.noise_anneal_steps))
        return gan.pack(x, o.pack) if o.pack > 1 else x

    def d_loss_fn(d_params, g_params, real, key, state):
        kz, kr, kf, kgp = jax.random.split(key, 4)
        z = jax.random.normal(kz, (real.shape[0], latent_dim))
        fake = jax.lax.stop_gradient(gen_fn(g_params, z, state.extras))
        real = critic_inputs(real, state.step, kr)
        fake = critic_inputs(fake, state.step, kf)
        real_logits = disc_fn(d_params, real)
        fake_logits = disc_fn(d_params, fake)
        if o.wasserstein:
            loss = gan.wasserstein_critic_loss(real_logits, fake_logits)
            metrics = {"wasserstein": -loss}
            if o.loss == "wgan_gp":
                k = o.gp_examples or real.shape[0]
                penalty = gan.gradient_penalty(kgp, lambda b: disc_fn(d_params, b), real[:k], fake[:k])
                loss = loss + o.gp_weight * penalty
                metrics["gradient_penalty"] = penalty
        else:
            loss = gan.discriminator_loss(real_logits, fake_logits, o.label_smoothing)
            metrics = {"d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                       "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
        if o.r1_weight:
            r1 = gan.r1_penalty(lambda b: disc_fn(d_params, b), real)
            loss = loss + 0.5 * o.r1_weight * r1
            metrics["r1"] = r1
        if o.historical_averaging:
            loss = loss + o.historical_averaging * gan.historical_average_penalty(
                d_params, state.extras["ha_discriminator"])
        return loss, metrics

    def g_loss_fn(g_params, d_params, real, key, state):
        kz, kr, kf = jax.random.split(key, 3)
        z = jax.random.normal(kz, (real.shape[0], latent_dim))
        fake = critic_inputs(gen_fn(g_params, z, state.extras), state.step, kf)
        if o.feature_matching:
            _, real_features = disc_fn(d_params, critic_inputs(real, state.step, kr), with_features=True)
            _, fake_features = disc_fn(d_params, fake, with_features=True)
            loss = gan.feature_matching_loss(jax.lax.stop_gradient(real_features), fake_features)
        elif o.wasserstein:
            loss = gan.wasserstein_generator_loss(disc_fn(d_params, fake))
        else:
            loss = gan.generator_loss(disc_fn(d_params, fake), saturating=o.loss == "gan_minimax")
        if o.historical_averaging:
            loss = loss + o.historical_averaging * gan.historical_average_penalty(
                g_params, state.extras["ha_generator"])
        return loss

    def step(state, batch, axis_name=None):
        reals = batch[data_key]  # [n_critic, B, ...]
        if preprocess is not None:
            reals = preprocess(reals)
        if reals.shape[0] != o.n_critic:
            raise ValueError(f"the batch's leading axis must be n_critic={o.n_critic}, got {reals.shape}")
        key = state.step_key()
        d_keys = jax.random.split(jax.random.fold_in(key, 0), o.n_critic)

        def critic_update(s, inputs):
            real, k = inputs
            (loss, metrics), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                s.params["discriminator"], s.params["generator"], real, k, s)
            s = s.update_part("discriminator", train.pmean_if(grads, axis_name))
            if o.loss == "wgan":
                s = s.replace(params={**s.params, "discriminator": gan.clip_weights(s.params["discriminator"], o.clip)})
            return s, {"d_loss": loss, **metrics}

        state, d_metrics = jax.lax.scan(critic_update, state, (reals, d_keys))
        d_metrics = jax.tree.map(lambda m: m[-1], d_metrics)
        g_loss, g_grads = jax.value_and_grad(g_loss_fn)(
            state.params["generator"], state.params["discriminator"], reals[-1], jax.random.fold_in(key, 1), state)
        state = state.update_part("generator", train.pmean_if(g_grads, axis_name))
        extras = {}
        if o.historical_averaging:
            extras["ha_generator"] = gan.historical_average_update(state.extras["ha_generator"], state.params["generator"])
            extras["ha_discriminator"] = gan.historical_average_update(
                state.extras["ha_discriminator"], state.params["discriminator"])
        metrics = train.pmean_if({"g_loss": g_loss, **d_metrics}, axis_name)
        return state.next_step(extras), metrics

    return step


# ------------------------------------------------------------------------------ 2-D toy data


class ToySource:
    """Batches of the 2-D ring or grid, a pure function of (seed, step), drawn with NumPy.

    `batches(start, k)["x"]` is float32 [k, draws, batch_size, 2]: `draws` independent batches
    per step (one per critic update). Step s uses `np.random.default_rng([seed, s])`, so a
    resumed run sees the same data and each seed its own stream.
    """

    def __init__(self, name: str, batch_size: int, seed: int, draws: int = 1):
        from genjax import data

        dist = data.toy_distribution(name)
        if dist.modes is None:
            raise ValueError(f"ToySource needs a mixture (ring or grid), got {name!r}")
        self.modes = np.asarray(dist.modes, np.float32)
        self.std = float(dist.std)
        self.batch_size, self.seed, self.draws = int(batch_size), int(seed), int(draws)

    def batches(self, start_step: int, num_steps: int) -> dict[str, np.ndarray]:
        out = np.empty((num_steps, self.draws, self.batch_size, 2), np.float32)
        for i in range(num_steps):
            rng = np.random.default_rng([self.seed, start_step + i])
            component = rng.integers(len(self.modes), size=(self.draws, self.batch_size))
            out[i] = self.modes[component] + self.std * rng.standard_normal((self.draws, self.batch_size, 2))
        return {"x": out}


class ImageSource:
    """`draws` consecutive batches of an `ArrayLoader` per step: "image" [k, draws, B, ...]."""

    def __init__(self, loader, draws: int = 1):
        self.loader, self.draws = loader, int(draws)

    def batches(self, start_step: int, num_steps: int) -> dict[str, np.ndarray]:
        b = self.loader.batches(start_step * self.draws, num_steps * self.draws)["image"]
        return {"image": b.reshape(num_steps, self.draws, *b.shape[1:])}


# ------------------------------------------------------------------------------ DCGAN on 28x28 images

VARIANT_SWITCHES = {
    "ls": "one-sided label smoothing",
    "fm": "feature matching",
    "mbd": "minibatch discrimination",
    "ha": "historical averaging",
    "vbn": "virtual batch norm in the generator",
    "noise": "annealed instance noise",
    "r1": "zero-centred R1 gradient penalty on real data",
    "ema": "samples from an exponential moving average of the generator's weights",
}


def parse_variant(variant: str) -> tuple[str, frozenset[str]]:
    """'gan+fm+ls' -> ('gan', {'fm', 'ls'}): a loss, then '+'-joined improved-training switches."""
    loss, *switches = variant.split("+")
    if loss not in LOSSES:
        raise ValueError(f"variant {variant!r}: it must start with a loss, one of {', '.join(LOSSES)}")
    unknown = set(switches) - set(VARIANT_SWITCHES)
    if unknown:
        raise ValueError(f"variant {variant!r}: unknown switch(es) {sorted(unknown)}; known: "
                         + ", ".join(f"{k} ({v})" for k, v in VARIANT_SWITCHES.items()))
    return loss, frozenset(switches)


def images_to_float(x):
    """uint8 images in [0, 255] -> float32 in [0, 1]."""
    import jax.numpy as jnp

    return x.astype(jnp.float32) / 255.0


# Published results of the 2-D mode-collapse benchmark, each quoted with its source, as
# (dataset, method, modes captured, high-quality samples in percent, reverse KL); the
# gan_mode_collapse and diffusion_2d experiments quote them. PacGAN, table 1 (2-D grid, 25 modes,
# 2,500 samples, mean +- std over 10 trials): the GAN and PacGAN4 rows as the issue quotes them;
# VEEGAN's table 1 and GDPP's WGAN-GP row could not be checked against the papers offline and are
# not listed.
PUBLISHED = (
    ("grid", "GAN (PacGAN table 1)", 17.3, 94.8, 0.70),
    ("grid", "PacGAN4 (PacGAN table 1)", 24.8, 93.6, 0.04),
)
