"""The model families whose train steps are benchmarked, built from the experiments' own builders.

A `Family` is everything a train-step benchmark needs (taken by name from the experiment's
`build()`, an `experiments._framework.Built`): `init(key) -> TrainState`, the step
`(state, batch, axis_name=None) -> (state, metrics)` (a `genjax.train` step, so that
`genjax.train.compile_fused` fuses it), `batches(key, k)` (synthetic inputs of the real shapes
and dtypes, `[K, ...]`: timings do not depend on the values) and the batch size. The families
built from an experiment take overrides of its config fields as keywords (e.g. `dcgan(width=8)`).
Every family takes `dtype`: "float32", or "bfloat16" for mixed precision (`genjax.train.mixed_precision` on
the networks inside the loss: parameters and inputs cast to bfloat16 there, float32 master
weights, gradients, optimizer state and loss; the experiments' `build(..., dtype=...)`).

- `vae_mlp`: PyTorch's classic VAE example (`pytorch/examples`, `vae/main.py`) exactly:
  `genjax.nn.VaeMlp()` (784-400-20 ReLU encoder, mirrored decoder, Bernoulli decoder from
  logits), float32 images in [0, 1], loss = -sum over the batch of the ELBO (binary cross-entropy
  summed + KL, as the example sums it), batch 128, Adam(1e-3).
- `gan_grid`: `experiments.gan_mode_collapse`, method "gan" (non-saturating GAN, MLP generator and
  discriminator, 3 x 128) on the 25-Gaussian grid, batch 512: one discriminator and one
  generator update per step.
- `dcgan`: `experiments.gan_mnist`, variant "gan": the DCGAN generator and discriminator on
  28x28 images, batch 64.
- `vqvae`: `experiments.vqvae` with the EMA codebook, beta 0.25 (K = 128, D = 16), batch 64.
- `ddpm_unet`: `experiments.ddpm_mnist`: the DDPM U-Net (channels 32-64-64, 2 residual blocks,
  attention), T = 1000, the simple loss, EMA weights, batch 128.
- `mnist_classifier`: `experiments.mnist_classifier` (AdamW, batch 128).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

FAMILIES = ("vae_mlp", "gan_grid", "dcgan", "vqvae", "ddpm_unet", "mnist_classifier")
IMAGE_SHAPE = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    description: str
    batch_size: int
    init: Callable[[Any], Any]  # key -> TrainState
    step: Callable[..., Any]  # (state, batch, axis_name=None) -> (state, metrics)
    batches: Callable[[Any, int], Any]  # (key, k) -> batches [K, ...]
    batch_axis: int = 0  # the batch axis of one step's batch (pmap splits it)
    dtype: str = "float32"


def _config(exp, batch_size: int | None, overrides: dict):
    """The experiment's default config, with `batch_size` (if given) and other fields overridden
    (smaller networks for tests)."""
    return exp.Config(**overrides, **({} if batch_size is None else {"batch_size": batch_size}))


def _uint8_images(key, shape):
    import jax
    import jax.numpy as jnp

    return jax.random.randint(key, shape, 0, 256).astype(jnp.uint8)


def vae_mlp(batch_size: int = 128, dtype: str = "float32") -> Family:
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import train, vae
    from genjax.nn import VaeMlp

    model = VaeMlp()  # 784-400-20, ReLU, Bernoulli logits: PyTorch's example
    apply = train.mixed_precision(model.apply, dtype)

    def loss_fn(params, batch, key, state):
        x = batch["image"]  # [B, 28, 28, 1] float32 in [0, 1]
        logits, mean, logvar = apply({"params": params}, x, key)
        elbo = vae.elbo(x, logits, mean, logvar)  # [B]
        return -jnp.sum(elbo), ({}, {})  # the example sums BCE + KLD over the batch

    def init(key):
        params = model.init(jax.random.fold_in(key, 0), jnp.zeros((1, *IMAGE_SHAPE)),
                            jax.random.fold_in(key, 1))["params"]
        return train.TrainState.create(params=params, tx=optax.adam(1e-3), key=jax.random.fold_in(key, 2))

    def batches(key, k):
        return {"image": jax.random.uniform(key, (k, batch_size, *IMAGE_SHAPE), jnp.float32)}

    return Family("vae_mlp", "genjax.nn.VaeMlp() 784-400-20 ReLU, Bernoulli logits, summed ELBO, Adam(1e-3)"
                  f" (PyTorch's vae/main.py), {dtype}", batch_size, init, train.make_train_step(loss_fn),
                  batches, dtype=dtype)


def gan_grid(batch_size: int | None = None, dtype: str = "float32", **config) -> Family:
    import jax

    from experiments import gan_mode_collapse as exp

    cfg = _config(exp, batch_size, config)
    built = exp.build(cfg, "gan", "grid", dtype=dtype)
    b = cfg.batch_size

    def batches(key, k):
        # [K, n_critic, B, 2]: the grid's 25 modes plus noise (values do not change the timing)
        return {"x": 2.0 * jax.random.normal(key, (k, built.options.n_critic, b, 2))}

    return Family("gan_grid", f"experiments.gan_mode_collapse 'gan' on the 25-Gaussian grid "
                  f"(MLP {cfg.depth}x{cfg.hidden}, Adam(b1=0.5)), {dtype}", b, built.init, built.step, batches,
                  batch_axis=1, dtype=dtype)


def dcgan(batch_size: int | None = None, dtype: str = "float32", **config) -> Family:
    from experiments import gan_mnist as exp

    cfg = _config(exp, batch_size, config)
    built = exp.build(cfg, "gan", dtype=dtype)
    b = cfg.batch_size

    def batches(key, k):
        return {"image": _uint8_images(key, (k, built.options.n_critic, b, *IMAGE_SHAPE))}

    return Family("dcgan", f"experiments.gan_mnist 'gan' (DCGAN width {cfg.width}, Adam(b1=0.5)), {dtype}",
                  b, built.init, built.step, batches, batch_axis=1, dtype=dtype)


def vqvae(batch_size: int | None = None, dtype: str = "float32", **config) -> Family:
    from experiments import vqvae as exp

    cfg = _config(exp, batch_size, config)
    built = exp.build(cfg, IMAGE_SHAPE, "ema", cfg.main_beta, data_variance=0.1, dtype=dtype)

    def batches(key, k):
        return {"image": _uint8_images(key, (k, cfg.batch_size, *IMAGE_SHAPE))}

    return Family("vqvae", f"experiments.vqvae EMA codebook K={cfg.num_codes} D={cfg.latent_dim}, "
                  f"channels {tuple(cfg.channels)}, {dtype}", cfg.batch_size, built.init, built.step, batches,
                  dtype=dtype)


def ddpm_unet(batch_size: int | None = None, quick_model: bool = False, dtype: str = "float32",
              **config) -> Family:
    from experiments import ddpm_mnist as exp

    model = {k: exp.QUICK[k] for k in ("channels", "num_res_blocks", "attention")} if quick_model else {}
    cfg = _config(exp, batch_size, {**model, **config})
    built = exp.build(cfg, IMAGE_SHAPE, dtype=dtype)

    def batches(key, k):
        return {"image": _uint8_images(key, (k, cfg.batch_size, *IMAGE_SHAPE))}

    return Family("ddpm_unet", f"experiments.ddpm_mnist U-Net {tuple(cfg.channels)} x{cfg.num_res_blocks} "
                  f"attention={cfg.attention}, T={cfg.num_timesteps}, {dtype}", cfg.batch_size, built.init,
                  built.step, batches, dtype=dtype)


def mnist_classifier(batch_size: int = 128, dtype: str = "float32", **config) -> Family:
    import jax
    import jax.numpy as jnp

    from experiments import mnist_classifier as exp

    built = exp.build(_config(exp, batch_size, config), 10, IMAGE_SHAPE, dtype=dtype)

    def batches(key, k):
        k_img, k_lab = jax.random.split(key)
        return {"image": _uint8_images(k_img, (k, batch_size, *IMAGE_SHAPE)),
                "label": jax.random.randint(k_lab, (k, batch_size), 0, 10).astype(jnp.int32)}

    return Family("mnist_classifier", f"experiments.mnist_classifier (genjax.nn.MnistClassifier, AdamW), {dtype}",
                  batch_size, built.init, built.step, batches, dtype=dtype)


def build_family(name: str, dtype: str = "float32") -> Family:
    """The family `name` at its default batch size, in `dtype` ("float32" or "bfloat16")."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return globals()[name](dtype=dtype)
