"""The public loss functions of the math modules other than `genjax.divergences`, as benchmarks.

`LOSSES` maps `<module>.<function>` (a variant in brackets, e.g. `vae.elbo[gaussian]`) to a
builder `(batch B, event size N, key) -> (f, args, argnums)`: `f(*args)` returns the loss values
(per-example `[B]`, or the scalar the function defines), `argnums` the arguments a user
differentiates (the `grad` variant is `jax.value_and_grad` of the sum of the values with respect
to them). Inputs: a batch of B rows of N features (logits, images in (0, 1), features), small
fixed networks where a loss takes a function (a 128-unit tanh critic, a 64-unit sigmoid encoder,
an MLP denoiser), 20 latent dimensions for the VAE losses, a 512 x 64 codebook for the VQ losses
(10-bit latents for LFQ's entropy penalty),
T = 1000 linear betas for `ddpm_loss`. An example is one row.
"""

from __future__ import annotations

import functools

from collections.abc import Callable
from typing import Any

Builder = Callable[[int, int, Any], tuple[Callable[..., Any], tuple[Any, ...], tuple[int, ...]]]

LATENT = 20  # VAE latent dimensions
CRITIC_HIDDEN = 128
ENCODER_HIDDEN = 64
CODES, CODE_DIM = 512, 64
IWAE_K = 64
TIMESTEPS = 1000


def _normal(key, shape, scale=1.0):
    import jax
    import jax.numpy as jnp

    return scale * jax.random.normal(key, shape, jnp.float32)


def _unit(key, shape):
    import jax
    import jax.numpy as jnp

    return jax.random.uniform(key, shape, jnp.float32, minval=0.01, maxval=0.99)


def _keys(key, n):
    import jax

    return jax.random.split(key, n)


# --------------------------------------------------------------------------------- genjax.gan


def _gan(name: str, kinds: str) -> Builder:
    def build(b, n, key):
        from genjax import gan

        f = getattr(gan, name)
        ks = _keys(key, 2)
        args = tuple(_normal(k, (b,), 3.0) for k in ks[: len(kinds)])
        return f, args, tuple(range(len(args)))

    return build


def _feature_matching(b, n, key):
    from genjax import gan

    k1, k2 = _keys(key, 2)
    return gan.feature_matching_loss, (_normal(k1, (b, n)), _normal(k2, (b, n))), (1,)


def _critic(params, x):
    import jax.numpy as jnp

    return jnp.tanh(x @ params["w1"]) @ params["w2"]  # [B]


def _critic_params(key, n):
    k1, k2 = _keys(key, 2)
    return {"w1": _normal(k1, (n, CRITIC_HIDDEN), n**-0.5), "w2": _normal(k2, (CRITIC_HIDDEN,), CRITIC_HIDDEN**-0.5)}


def _gradient_penalty(b, n, key):
    import jax

    from genjax import gan

    k0, k1, k2, k3 = _keys(key, 4)
    gp_key = jax.random.key_data(k3)

    def f(params, real, fake, raw_key):
        return gan.gradient_penalty(jax.random.wrap_key_data(raw_key), lambda x: _critic(params, x), real, fake)

    return f, (_critic_params(k0, n), _normal(k1, (b, n)), _normal(k2, (b, n)), gp_key), (0,)


def _r1_penalty(b, n, key):
    from genjax import gan

    k0, k1 = _keys(key, 2)

    def f(params, real):
        return gan.r1_penalty(lambda x: _critic(params, x), real)

    return f, (_critic_params(k0, n), _normal(k1, (b, n))), (0,)


def _historical_average(b, n, key):
    from genjax import gan

    k1, k2 = _keys(key, 2)
    params = {"w": _normal(k1, (b, n))}
    state = gan.historical_average_init({"w": _normal(k2, (b, n))})
    return gan.historical_average_penalty, (params, state), (0,)


# ------------------------------------------------------------------------ genjax.autoencoders


def _reconstruction(kind: str) -> Builder:
    def build(b, n, key):
        from genjax import autoencoders

        k1, k2 = _keys(key, 2)

        def f(x, output):
            return autoencoders.reconstruction_loss(x, output, kind)  # [B]

        return f, (_unit(k1, (b, n)), _normal(k2, (b, n))), (1,)

    return build


def _sparsity(name: str, kind: str) -> Builder:
    def build(b, n, key):
        import jax.numpy as jnp

        from genjax import autoencoders

        f = getattr(autoencoders, name)
        x = _unit(key, (b, n)) if kind == "unit" else _normal(key, (b, n))
        return f, (x, jnp.asarray(0.05, jnp.float32)), (0,)

    return build


def _contractive(b, n, key):
    import jax

    from genjax import autoencoders

    k1, k2 = _keys(key, 2)

    def f(w, x):
        return autoencoders.contractive_penalty(lambda xi: jax.nn.sigmoid(xi @ w), x)

    return f, (_normal(k1, (n, ENCODER_HIDDEN), n**-0.5), _unit(k2, (b, n))), (0,)


def _sigmoid_contractive(b, n, key):
    import jax

    from genjax import autoencoders

    k1, k2 = _keys(key, 2)
    w = _normal(k1, (n, ENCODER_HIDDEN), n**-0.5)
    hidden = jax.nn.sigmoid(_unit(k2, (b, n)) @ w)
    return autoencoders.sigmoid_contractive_penalty, (hidden, w), (0, 1)


# -------------------------------------------------------------------------------- genjax.vae


def _elbo(likelihood: str) -> Builder:
    def build(b, n, key):
        from genjax import vae

        k1, k2, k3, k4 = _keys(key, 4)

        def f(x, out, mean, logvar):
            return vae.elbo(x, out, mean, logvar, likelihood)  # [B]

        args = (_unit(k1, (b, n)), _normal(k2, (b, n)), _normal(k3, (b, LATENT)), _normal(k4, (b, LATENT), 0.3))
        return f, args, (1, 2, 3)

    return build


def _score_function_elbo(b, n, key):
    from genjax import vae

    k1, k2, k3, k4, k5 = _keys(key, 5)
    args = (_unit(k1, (b, n)), _normal(k2, (b, n)), _normal(k3, (b, LATENT)), _normal(k4, (b, LATENT)),
            _normal(k5, (b, LATENT), 0.3))
    return vae.score_function_elbo, args, (1, 3, 4)


def _iwae_bound(b, n, key):
    from genjax import vae

    return vae.iwae_bound, (_normal(key, (IWAE_K, b), 10.0),), (0,)


# --------------------------------------------------------------------------------- genjax.vq


def _vq(name: str) -> Builder:
    def build(b, n, key):
        from genjax import vq

        k1, k2 = _keys(key, 2)
        return getattr(vq, name), (_normal(k1, (b, CODE_DIM)), _normal(k2, (b, CODE_DIM))), (0, 1)

    return build


LFQ_BITS = 10  # 1,024 implicit codes: the batch entropy is computed exactly, in chunks of codes


def _lfq_entropy_penalty(b, n, key):
    """`vq.lfq_entropy_penalty` (MAGVIT-v2's per-sample minus batch entropy) of B latents of 10
    bits; the value is the scalar penalty."""
    from genjax import vq

    return (lambda z: vq.lfq_entropy_penalty(z)[0]), (_normal(key, (b, LFQ_BITS)),), (0,)


def _quantize(exact: bool) -> Builder:
    """`vq.quantize` with the direct re-ranking of the best candidates (exact, the default) or the
    matmul ranking alone (`exact=False`): the pair of rows is the cost of the exact assignment."""

    def build(b, n, key):
        import jax.numpy as jnp

        from genjax import vq

        k1, k2 = _keys(key, 2)

        def f(z, codebook):
            z_q, _ = vq.quantize(z, codebook, exact=exact)  # [B, D]
            return jnp.sum(z_q**2, axis=-1)  # [B]: a loss of z_q, so that the gradient flows through

        return f, (_normal(k1, (b, CODE_DIM)), _normal(k2, (CODES, CODE_DIM))), (0,)

    return build


# -------------------------------------------------------------------------- genjax.diffusion


def _ddpm_loss(b, n, key, loss="ddpm_loss", learned_variance=False, **options):
    import jax
    import jax.numpy as jnp

    from genjax import diffusion

    schedule = diffusion.make_schedule(diffusion.linear_beta_schedule(TIMESTEPS))
    k1, k2, k3, k4 = _keys(key, 4)
    params = {"w1": _normal(k1, (n, CRITIC_HIDDEN), n**-0.5), "t": _normal(k2, (TIMESTEPS, CRITIC_HIDDEN), 0.1),
              "w2": _normal(k3, (CRITIC_HIDDEN, (1 + learned_variance) * n), CRITIC_HIDDEN**-0.5)}

    def eps_fn(params, x, t):  # an MLP denoiser with a learned timestep embedding
        out = jnp.tanh(x @ params["w1"] + params["t"][t]) @ params["w2"]
        # hybrid_loss's model also returns v, the interpolation of eq. (15), from a second head
        return (out[:, :n], jax.nn.sigmoid(out[:, n:])) if learned_variance else out

    def f(params, x0, raw_key):
        return getattr(diffusion, loss)(jax.random.wrap_key_data(raw_key), lambda x, t: eps_fn(params, x, t),
                                        schedule, x0, **options)  # [B]

    return f, (params, _normal(k4, (b, n)), jax.random.key_data(k4)), (0,)


LOSSES: dict[str, Builder] = {
    "gan.discriminator_loss": _gan("discriminator_loss", "rf"),
    "gan.generator_loss": _gan("generator_loss", "f"),
    "gan.minimax_value": _gan("minimax_value", "rf"),
    "gan.wasserstein_critic_loss": _gan("wasserstein_critic_loss", "rf"),
    "gan.wasserstein_generator_loss": _gan("wasserstein_generator_loss", "f"),
    "gan.feature_matching_loss": _feature_matching,
    "gan.gradient_penalty": _gradient_penalty,
    "gan.r1_penalty": _r1_penalty,
    "gan.historical_average_penalty": _historical_average,
    "autoencoders.reconstruction_loss[mse]": _reconstruction("mse"),
    "autoencoders.reconstruction_loss[bernoulli]": _reconstruction("bernoulli"),
    "autoencoders.sparsity_penalty": _sparsity("sparsity_penalty", "unit"),
    "autoencoders.sparsity_penalty_from_logits": _sparsity("sparsity_penalty_from_logits", "normal"),
    "autoencoders.contractive_penalty": _contractive,
    "autoencoders.sigmoid_contractive_penalty": _sigmoid_contractive,
    "vae.elbo[bernoulli]": _elbo("bernoulli"),
    "vae.elbo[gaussian]": _elbo("gaussian"),
    "vae.score_function_elbo": _score_function_elbo,
    "vae.iwae_bound": _iwae_bound,
    "vq.quantize[exact]": _quantize(True),
    "vq.quantize[matmul]": _quantize(False),
    "vq.codebook_loss": _vq("codebook_loss"),
    "vq.commitment_loss": _vq("commitment_loss"),
    "vq.vq_loss": _vq("vq_loss"),
    "vq.lfq_entropy_penalty": _lfq_entropy_penalty,
    "diffusion.ddpm_loss": _ddpm_loss,
    "diffusion.min_snr_loss[v]": functools.partial(_ddpm_loss, loss="min_snr_loss", prediction="v"),
    "diffusion.hybrid_loss": functools.partial(_ddpm_loss, loss="hybrid_loss", learned_variance=True),
}
