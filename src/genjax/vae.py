"""Variational autoencoders: the ELBO, the reparameterization trick, importance-weighted bounds.

A VAE pairs a decoder ``p_theta(x | z) p(z)`` (prior ``p(z) = N(0, I)``) with an encoder
``q_phi(z | x) = N(mean, diag(exp(logvar)))``. For any ``q``,

    log p(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  +  KL(q(z | x) || p(z | x))
             = ELBO(x)                                   +  (a reverse KL, >= 0),

so the ELBO is a lower bound on ``log p(x)`` and maximising it over ``phi`` minimises the
*reverse* KL from ``q`` to the true posterior (mode-seeking, as in ``experiments.info_theory``).
The expectation is estimated with one sample ``z = mean + exp(logvar / 2) * eps``,
``eps ~ N(0, I)`` (the reparameterization trick: ``z`` is a differentiable function of the
encoder's outputs, so the gradient flows through the sample), and the KL to the prior is analytic
(``genjax.divergences.gaussian_kl``). The score-function (REINFORCE) estimator
``E_q[f(z) grad log q(z)]`` is here for comparison (``score_function_elbo``); its variance is the
reason the trick matters.

With ``k`` samples ``z_i ~ q`` and weights ``w_i = p(x | z_i) p(z_i) / q(z_i | x)``,
``L_k = E[log (1/k) sum_i w_i]`` is a lower bound too; ``L_1`` is the ELBO, ``L_k`` rises with
``k`` and tends to ``log p(x)`` (Burda et al. 2016): the standard estimate of a VAE's test
log-likelihood is ``L_5000`` (``estimate_log_likelihood``).

Public functions (pure; safe under ``jit``, ``vmap``, ``grad``):

- ``reparameterize(key, mean, logvar, sample_shape=())``
- ``elbo(x, decoder_out, mean, logvar, likelihood="bernoulli", *, decoder_logvar=None, beta=1.0)``
- ``log_likelihood(x, decoder_out, likelihood="bernoulli", *, decoder_logvar=None, event_ndim=None)``
- ``diag_gaussian_log_prob(z, mean, logvar)``
- ``score_function_elbo(x, decoder_out, z, mean, logvar, likelihood="bernoulli", ...)``
- ``iwae_log_weights(x, decoder_out, z, mean, logvar, likelihood="bernoulli", ...)``
- ``iwae_bound(log_weights)``
- ``sample_iwae_log_weights(key, encode_fn, decode_fn, x, num_samples, ...)``
- ``estimate_log_likelihood(key, encode_fn, decode_fn, x, num_samples, ...)``

Conventions:

- **Shapes.** ``mean`` and ``logvar`` are ``[*batch, D]`` with at least one batch axis (the
  losses return one value per example: a single example is a batch of one, ``mean[None]``);
  ``x`` and ``decoder_out`` are ``[*batch, *event]`` (e.g. ``[B, 28, 28, 1]``): the batch shape
  is read off ``mean``, and everything after it in ``x`` is the event, summed over (the
  ``event_ndim`` of ``log_likelihood``, which has no ``mean`` to read it from, counts these
  trailing axes). Results are per example, ``[*batch]`` (average them in the training step).
  Mismatched shapes raise ``ValueError``; nothing is broadcast silently. Sample axes (``k``
  importance samples) lead: ``z`` ``[k, *batch, D]``, ``decoder_out`` ``[k, *batch, *event]``,
  log weights ``[k, *batch]``.
- **Arguments.** The key comes first in the functions that sample, then the callables, then
  the data (``sample_iwae_log_weights(key, encode_fn, decode_fn, x, k)``); keys are never
  defaulted. Arrays of real numbers are accepted (integer and boolean ones are promoted to the
  default float); static numbers (``beta``, a fixed ``decoder_logvar``, ``baseline``) given as
  Python numbers are checked against their domain (``ValueError``; strings and booleans are a
  ``TypeError``), traced ones are used as given; counts and shapes must be Python ints (see
  ``genjax._checks``).
- **Infinities.** Infinite logits and log-variances give the limits of the log-densities and
  of the KL (e.g. a logit of ``+inf`` and ``x = 1``: log-probability 0), never NaN where a
  limit exists. A finite value has a finite gradient, unless the gradient itself exceeds the
  range of the input's dtype (with float16 inputs, e.g. ``d KL / d logvar = (e^logvar - 1) / 2``
  passes 65504 at ``logvar`` above 11: the exact derivative is not representable).
- **Likelihoods.** ``"bernoulli"``: ``decoder_out`` are logits, ``log p(x|z) = sum x log
  sigmoid(l) + (1 - x) log sigmoid(-l)``, stable for any finite logits (for grey levels in
  [0, 1] this is the binary cross-entropy that PyTorch's VAE example minimises, not a normalised
  density). ``"gaussian"``: ``decoder_out`` is the mean; the variance is 1 unless
  ``decoder_logvar`` (a scalar for a fixed variance, or an array of ``decoder_out``'s shape for a
  learned one) is given.
- **Units and dtypes.** Nats. Computed and returned in at least float32: half-precision inputs
  are computed in float32, and the result stays float32 (a log-likelihood summed over hundreds
  of pixels has no useful bfloat16 representation).
- **Compilation.** Arguments are validated eagerly, then one jitted kernel runs: an eager call
  compiles once per shape and option, a call inside the caller's ``jit`` is simply inlined.

References:
    D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (arXiv:1312.6114).
    D. J. Rezende, S. Mohamed and D. Wierstra, "Stochastic Backpropagation and Approximate
    Inference in Deep Generative Models", ICML 2014.
    I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework", ICLR 2017 (the beta weight on the KL).
    Y. Burda, R. Grosse and R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016
    (arXiv:1509.00519).
    R. J. Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 8, 1992 (the score-function estimator).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from genjax import _checks, _numerics, divergences

__all__ = [
    "LIKELIHOODS",
    "reparameterize",
    "elbo",
    "log_likelihood",
    "diag_gaussian_log_prob",
    "score_function_elbo",
    "iwae_log_weights",
    "iwae_bound",
    "sample_iwae_log_weights",
    "estimate_log_likelihood",
]

LIKELIHOODS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Validation (static, run at trace time; the shared checks are genjax._checks).
# --------------------------------------------------------------------------------------------


def _check_likelihood(likelihood: str, decoder_logvar: Any) -> None:
    _checks.choice(likelihood, "likelihood", LIKELIHOODS)
    if likelihood == "bernoulli" and decoder_logvar is not None:
        raise ValueError("`decoder_logvar` is only used with likelihood='gaussian'; "
                         "the Bernoulli likelihood has no variance")


def _posterior(mean: ArrayLike, logvar: ArrayLike, batched: bool = True) -> tuple[jax.Array, jax.Array]:
    """mean and logvar, [*batch, D] (batched: with at least one batch axis, as the losses need)."""
    mean, logvar = _checks.real_array(mean, "mean"), _checks.real_array(logvar, "logvar")
    _checks.same_shape(mean, logvar, "mean", "logvar")
    if mean.ndim < 1:
        raise ValueError(f"`mean` needs a latent axis: shape [*batch, D], got shape {mean.shape}")
    if batched and mean.ndim < 2:
        raise ValueError(
            f"`mean` and `logvar` must be [*batch, D] with at least one batch axis, got shape "
            f"{mean.shape}: a single example's latent (D = {mean.shape[0]})? Add a batch axis, "
            "e.g. mean[None] (the losses return one value per example of the batch)"
        )
    return mean, logvar


def _data(x: ArrayLike, decoder_out: ArrayLike, batch_shape: tuple[int, ...],
          sample_shape: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """Checks x [*batch, *event] and decoder_out [*sample, *batch, *event]."""
    x, decoder_out = _checks.real_array(x, "x"), _checks.real_array(decoder_out, "decoder_out")
    nb = len(batch_shape)
    if x.shape[:nb] != tuple(batch_shape):
        raise ValueError(
            f"`x` must have the batch shape {tuple(batch_shape)} of `mean` in front "
            f"([*batch, *event]), got x.shape={x.shape}"
        )
    expected = tuple(sample_shape) + x.shape
    if decoder_out.shape != expected:
        what = "[*sample, *x.shape]" if sample_shape else "x.shape"
        raise ValueError(
            f"`decoder_out` must have shape {what} = {expected}, got decoder_out.shape="
            f"{decoder_out.shape} (no implicit broadcasting)"
        )
    return x, decoder_out


def _decoder_logvar(decoder_logvar: Any, decoder_out: jax.Array) -> jax.Array:
    """The Gaussian decoder's log-variance: 0 (unit variance) when None.

    A Python number must be finite (a fixed variance); an array is used as given (its infinite
    entries give the limits documented in ``log_likelihood``).
    """
    if decoder_logvar is None:
        return jnp.zeros((), decoder_out.dtype if jnp.issubdtype(decoder_out.dtype, jnp.floating)
                         else jnp.float32)
    if _checks.is_static_number(decoder_logvar) or isinstance(decoder_logvar, (bool, str, bytes)):
        return jnp.asarray(_checks.number(decoder_logvar, "decoder_logvar"))
    lv = _checks.real_array(decoder_logvar, "decoder_logvar")
    _checks.broadcasts_into(lv, decoder_out.shape, "decoder_logvar", "decoder_out")
    return lv


def _beta(beta: Any) -> Any:
    """The KL weight: a Python number in [0, inf), or a traced/array scalar used as given."""
    return _checks.number(beta, "beta", low=0.0)


# --------------------------------------------------------------------------------------------
# Elementwise log-densities (inside the kernels).
# --------------------------------------------------------------------------------------------


def _bernoulli_log_prob(x, logits):
    """x log sigmoid(l) + (1 - x) log sigmoid(-l), elementwise, with the limits at l = +-inf.

    Computed as the identical x l - softplus(l) (log sigmoid(l) = l - softplus(l)): one exp and
    one log1p per element instead of two of each, and the gradient x - sigmoid(l) directly. At
    infinite logits the limit (``genjax._numerics.bernoulli_log_prob``): 0 for the outcome that
    the logit makes certain (x = 1 at +inf, x = 0 at -inf), -inf for the other.
    """
    return _numerics.bernoulli_log_prob(x, logits)


def _gaussian_log_prob(x, mean, logvar):
    """log N(x; mean, exp(logvar)), elementwise, with the limits at logvar = +-inf.

    ``-1/2 (log 2 pi + s + (x - mu)^2 exp(-s))``, the same arithmetic as the plain formula
    wherever that is finite. A zero residual contributes exactly 0 to the quadratic term whatever
    ``s`` (a double ``where``, so that ``0 * exp(inf)`` is never formed, in the value or the
    gradient): a tiny or zero variance at ``x = mu`` is ``-(log 2 pi + s) / 2`` (``+inf`` for
    ``s = -inf``, a point mass), not NaN. Elsewhere ``s = -inf`` gives ``-inf``: ``s`` is clamped
    to the most negative finite number in the linear term when the residual is non-zero (the
    quadratic term, ``+inf``, dominates it); ``s = +inf`` gives ``-inf``.
    """
    r = x - mean
    zero = r == 0
    quadratic = jnp.square(jnp.where(zero, 0, r)) * jnp.exp(-jnp.where(zero, 0, logvar))
    lowest = jnp.finfo(jnp.result_type(logvar)).min
    linear = jnp.where(zero, logvar, jnp.maximum(logvar, lowest))
    return -0.5 * (_LOG_2PI + linear + quadratic)


def _log_lik(x, decoder_out, decoder_logvar, likelihood, event_ndim, dtype):
    flat = lambda a: _numerics.flatten_trailing(a.astype(dtype), event_ndim)  # noqa: E731
    if likelihood == "bernoulli":
        terms = _bernoulli_log_prob(flat(x), flat(decoder_out))
    else:
        lv = jnp.broadcast_to(decoder_logvar, decoder_out.shape)
        terms = _gaussian_log_prob(flat(x), flat(decoder_out), flat(lv))
    return jnp.sum(terms, axis=-1) if event_ndim else terms  # the event axes are one axis now


# --------------------------------------------------------------------------------------------
# The reparameterization trick.
# --------------------------------------------------------------------------------------------


def reparameterize(key: jax.Array, mean: ArrayLike, logvar: ArrayLike,
                   sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """Draws ``z ~ N(mean, diag(exp(logvar)))`` as a differentiable function of mean and logvar.

    ``z = mean + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn from ``key``: the noise is
    independent of the parameters, so ``dz/dmean = 1`` and ``dz/dlogvar = (z - mean) / 2`` and
    gradients of any ``f(z)`` flow back into the encoder.

    Args:
      key: a PRNG key (``jax.random.key(seed)``); required, never defaulted.
      mean: ``[*batch, D]`` means.
      logvar: ``[*batch, D]`` log-variances (same shape as ``mean``).
      sample_shape: leading sample axes to draw, e.g. ``(k,)`` for ``k`` importance samples.

    Returns:
      ``z`` of shape ``[*sample_shape, *batch, D]`` in the floating dtype of ``mean``/``logvar``
      (float32 for integer inputs).

    Raises:
      ValueError: ``mean`` and ``logvar`` differ in shape or are scalars, ``sample_shape`` has a
        negative entry.
      TypeError: ``key`` is not a PRNG key (``None`` included), ``sample_shape`` is not an int or
        a tuple of ints (``(2.5,)`` is an error, never truncated), non-real inputs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.vae import reparameterize
      >>> z = reparameterize(jax.random.key(0), jnp.zeros((4, 2)), jnp.zeros((4, 2)), (3,))
      >>> z.shape
      (3, 4, 2)
      >>> float(jax.grad(lambda m: reparameterize(jax.random.key(0), m, jnp.zeros(1))[0])(jnp.ones(1))[0])
      1.0

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes (ICLR 2014), section 2.4.
    """
    key = _checks.key(key)
    mean, logvar = _posterior(mean, logvar, batched=False)
    sample_shape = _checks.shape(sample_shape, "sample_shape")
    dtype = _checks.out_dtype(mean, logvar)
    return _reparameterize_kernel(key, mean, logvar, sample_shape=sample_shape, dtype=jnp.dtype(dtype))


@_checks.kernel("sample_shape", "dtype")
def _reparameterize_kernel(key, mean, logvar, *, sample_shape, dtype):
    eps = jax.random.normal(key, sample_shape + mean.shape, dtype)
    return mean.astype(dtype) + jnp.exp(0.5 * logvar.astype(dtype)) * eps


# --------------------------------------------------------------------------------------------
# Log-densities and the ELBO.
# --------------------------------------------------------------------------------------------


def log_likelihood(
    x: ArrayLike,
    decoder_out: ArrayLike,
    likelihood: str = "bernoulli",
    *,
    decoder_logvar: ArrayLike | None = None,
    event_ndim: int | None = None,
) -> jax.Array:
    """The decoder's log-likelihood ``log p(x | z)``, summed over the event axes.

    ``bernoulli``: ``sum x log sigmoid(l) + (1 - x) log sigmoid(-l)`` with ``l = decoder_out``
    (logits). ``gaussian``: ``sum -1/2 (log 2 pi + s + (x - mu)^2 / exp(s))`` with
    ``mu = decoder_out`` and ``s = decoder_logvar`` (0 when None: unit variance).

    Infinite parameters give the limits, never NaN: a logit of ``+inf`` (``-inf``) makes
    ``x = 1`` (``x = 0``) certain, log-probability 0, and any other ``x`` impossible, ``-inf``; a
    log-variance of ``+inf`` gives ``-inf``, and of ``-inf`` (a point mass at ``mu``) ``+inf`` at
    ``x = mu`` and ``-inf`` elsewhere. Finite values of the terms have finite gradients.

    Args:
      x: data, ``[*batch, *event]``.
      decoder_out: logits (bernoulli) or means (gaussian), same shape as ``x``.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      decoder_logvar: gaussian only: a finite Python number (fixed variance) or an array
        broadcastable to ``x.shape`` (a learned variance).
      event_ndim: how many trailing axes form the event (default ``x.ndim - 1``: all but the
        leading batch axis), a Python int in ``[0, x.ndim]``.

    Returns:
      ``[*batch]`` log-likelihoods in nats (at least float32).

    Raises:
      ValueError: shapes differ, ``likelihood`` unknown, ``decoder_logvar`` given for a
        Bernoulli likelihood, not broadcastable or a NaN/infinite number, ``event_ndim`` out of
        range.
      TypeError: non-real inputs, ``event_ndim`` not an int.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.vae import log_likelihood
      >>> round(float(log_likelihood(jnp.ones((1, 2)), jnp.zeros((1, 2)))[0]), 4)  # 2 log(1/2)
      -1.3863

    References:
      Kingma & Welling (ICLR 2014), Appendix C (Bernoulli and Gaussian decoders).
    """
    _check_likelihood(likelihood, decoder_logvar)
    x, decoder_out = _checks.real_array(x, "x"), _checks.real_array(decoder_out, "decoder_out")
    _checks.same_shape(x, decoder_out, "x", "decoder_out")
    if event_ndim is None:
        event_ndim = max(x.ndim - 1, 0)
    event_ndim = _checks.integer(event_ndim, "event_ndim", low=0, high=x.ndim)
    lv = _decoder_logvar(decoder_logvar, decoder_out)
    dtype = _checks.compute_dtype(x, decoder_out, lv)
    return _log_likelihood_kernel(x, decoder_out, lv, likelihood=likelihood, event_ndim=event_ndim, dtype=dtype)


@_checks.kernel("likelihood", "event_ndim", "dtype")
def _log_likelihood_kernel(x, decoder_out, lv, *, likelihood, event_ndim, dtype):
    return _log_lik(x, decoder_out, lv, likelihood, event_ndim, dtype)


def diag_gaussian_log_prob(z: ArrayLike, mean: ArrayLike = 0.0, logvar: ArrayLike = 0.0) -> jax.Array:
    """``log N(z; mean, diag(exp(logvar)))``, summed over the last (latent) axis.

    ``-1/2 sum_d (log 2 pi + logvar_d + (z_d - mean_d)^2 / exp(logvar_d))``. With the defaults it
    is the standard-normal prior ``log p(z)``; with an encoder's outputs, ``log q(z | x)``.
    Infinite log-variances give the limits (as in ``log_likelihood``), never NaN.

    Args:
      z: ``[*sample, *batch, D]`` points.
      mean: a scalar or an array broadcastable to ``z.shape`` (e.g. ``[*batch, D]``).
      logvar: a scalar or an array broadcastable to ``z.shape``.

    Returns:
      ``[*sample, *batch]`` log-densities (at least float32).

    Raises:
      ValueError: ``z`` is a scalar, or ``mean``/``logvar`` do not broadcast to ``z.shape``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.vae import diag_gaussian_log_prob
      >>> round(float(diag_gaussian_log_prob(jnp.zeros(1))), 4)  # -log(2 pi) / 2
      -0.9189

    References:
      Any statistics text; e.g. Bishop, Pattern Recognition and Machine Learning (2006), eq. 2.43.
    """
    z, mean, logvar = _checks.real_array(z, "z"), _checks.real_array(mean, "mean"), _checks.real_array(logvar, "logvar")
    if z.ndim < 1:
        raise ValueError(f"`z` needs a latent axis, got shape {z.shape}")
    _checks.broadcasts_into(mean, z.shape, "mean", "z")
    _checks.broadcasts_into(logvar, z.shape, "logvar", "z")
    return _diag_gaussian_kernel(z, mean, logvar, dtype=_checks.compute_dtype(z, mean, logvar))


@_checks.kernel("dtype")
def _diag_gaussian_kernel(z, mean, logvar, *, dtype):
    return _diag_gaussian(z, mean, logvar, dtype)


def _diag_gaussian(z, mean, logvar, dtype):
    z = z.astype(dtype)
    mean = jnp.broadcast_to(mean.astype(dtype), z.shape)
    logvar = jnp.broadcast_to(logvar.astype(dtype), z.shape)
    return jnp.sum(_gaussian_log_prob(z, mean, logvar), axis=-1)


def elbo(
    x: ArrayLike,
    decoder_out: ArrayLike,
    mean: ArrayLike,
    logvar: ArrayLike,
    likelihood: str = "bernoulli",
    *,
    decoder_logvar: ArrayLike | None = None,
    beta: float | ArrayLike = 1.0,
) -> jax.Array:
    """The per-example evidence lower bound, estimated with the sample that produced decoder_out.

    ``ELBO(x) = log p(x | z) - beta * KL(N(mean, exp(logvar)) || N(0, I))`` with
    ``z ~ q(z | x)`` (draw it with ``reparameterize``) and ``decoder_out = decoder(z)``. The KL is
    analytic (``genjax.divergences.gaussian_kl``), only the reconstruction term is a Monte Carlo
    estimate. ``beta = 1`` is the VAE's bound on ``log p(x)``; ``beta != 1`` is the beta-VAE
    objective (no longer a bound for ``beta < 1``). Minimise ``-mean(elbo(...))``.

    Args:
      x: data, ``[*batch, *event]`` (e.g. binary images ``[B, 28, 28, 1]``).
      decoder_out: same shape as ``x``: logits (bernoulli) or means (gaussian).
      mean: encoder means, ``[*batch, D]``.
      logvar: encoder log-variances, ``[*batch, D]``.
      likelihood: ``"bernoulli"`` (from logits) or ``"gaussian"``.
      decoder_logvar: gaussian only: a scalar (fixed variance; unit when None) or an array of
        ``x``'s shape (a learned variance).
      beta: the weight on the KL term, ``>= 0``: a Python number (checked) or a traced scalar,
        e.g. an annealing schedule (used as given). ``beta = 0`` drops the KL term exactly.

    Returns:
      ``[*batch]`` ELBO values in nats (at least float32). Infinite logits or log-variances give
      the limits of ``log_likelihood`` and of the KL (``genjax.divergences.gaussian_kl``), never
      NaN where a limit exists.

    Raises:
      ValueError: mismatched shapes (``mean``/``logvar`` without a batch axis, ``x`` whose
        leading axes are not ``mean``'s batch shape, ``decoder_out`` not of ``x``'s shape),
        unknown ``likelihood``, ``decoder_logvar`` with bernoulli, ``beta`` negative or NaN.
      TypeError: non-real inputs, ``beta`` a string or a boolean.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.vae import elbo
      >>> x = jnp.array([[1.0, 0.0]])
      >>> # logits 0 -> p = 1/2 per pixel: 2 log(1/2); q = N(1, 1): KL = 1/2
      >>> round(float(elbo(x, jnp.zeros((1, 2)), jnp.ones((1, 1)), jnp.zeros((1, 1)))[0]), 4)
      -1.8863

    References:
      Kingma & Welling, Auto-Encoding Variational Bayes (ICLR 2014), eq. 10 and Appendix B;
      Higgins et al., beta-VAE (ICLR 2017), eq. 4.
    """
    _check_likelihood(likelihood, decoder_logvar)
    mean, logvar = _posterior(mean, logvar)
    x, decoder_out = _data(x, decoder_out, mean.shape[:-1])
    lv = _decoder_logvar(decoder_logvar, decoder_out)
    beta = _beta(beta)
    dtype = _checks.compute_dtype(x, decoder_out, mean, logvar, lv)
    event_ndim = x.ndim - (mean.ndim - 1)
    return _elbo_kernel(x, decoder_out, mean, logvar, lv, beta, likelihood=likelihood,
                        event_ndim=event_ndim, dtype=dtype)


@_checks.kernel("likelihood", "event_ndim", "dtype")
def _elbo_kernel(x, decoder_out, mean, logvar, lv, beta, *, likelihood, event_ndim, dtype):
    rec = _log_lik(x, decoder_out, lv, likelihood, event_ndim, dtype)  # [B]
    kl = divergences.gaussian_kl(mean.astype(dtype), logvar.astype(dtype))  # [B]
    return rec - _weighted_kl(beta, kl, dtype)


def _weighted_kl(beta, kl, dtype):
    """beta * KL, exactly 0 for beta = 0 even where KL is infinite (no 0 * inf = NaN, in the
    value or in the gradient: double where)."""
    beta = jnp.asarray(beta).astype(dtype)
    off = beta == 0
    return jnp.where(off, 0, jnp.where(off, 1, beta) * kl)


def score_function_elbo(
    x: ArrayLike,
    decoder_out: ArrayLike,
    z: ArrayLike,
    mean: ArrayLike,
    logvar: ArrayLike,
    likelihood: str = "bernoulli",
    *,
    decoder_logvar: ArrayLike | None = None,
    beta: float | ArrayLike = 1.0,
    baseline: float | ArrayLike = 0.0,
) -> jax.Array:
    """The ELBO of ``elbo``, with gradients to the encoder by the score-function estimator.

    Its value equals ``elbo(x, decoder_out, mean, logvar, ...)``; its gradient with respect to
    ``mean`` and ``logvar`` is the REINFORCE (likelihood-ratio) estimate
    ``(log p(x | z) - baseline) * grad log q(z | x) - beta * grad KL`` instead of the
    pathwise one: ``z`` is treated as a constant sample (``stop_gradient`` is applied to it here),
    and the reconstruction term reaches the encoder only through ``log q``. It is written as
    ``r + stop_gradient(r - b) * (log q - stop_gradient(log q)) - beta KL`` (the added term is 0
    in value). Both estimators are unbiased for the same gradient; this one does not need
    ``log p(x | z)`` to be differentiable in ``z`` (discrete latents) but its variance is far
    larger (see ``experiments.vae``). A baseline ``b`` independent of ``z`` keeps it unbiased and
    can lower the variance.

    The caller must decode a sample that carries no gradient to the encoder:
    ``z = jax.lax.stop_gradient(reparameterize(key, mean, logvar))``, ``decoder_out = decode(z)``;
    otherwise the pathwise gradient also flows through ``decoder_out``. Decoder parameters get
    the ordinary gradient of ``log p(x | z)`` either way.

    Args:
      x: data, ``[*batch, *event]``.
      decoder_out: the decoder's output for ``z``, same shape as ``x``.
      z: the sample, ``[*batch, D]``.
      mean: encoder means, ``[*batch, D]``.
      logvar: encoder log-variances, ``[*batch, D]``.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      decoder_logvar: as in ``elbo``.
      beta: the weight on the (analytic) KL term, ``>= 0`` (as in ``elbo``).
      baseline: a scalar or ``[*batch]`` control variate subtracted from the reward; must not
        depend on ``z`` (it is stop-gradient'ed). A Python number must be finite.

    Returns:
      ``[*batch]`` surrogate values, numerically equal to the ELBO estimate (also where it is
      infinite: the surrogate term is dropped where the reward or ``log q`` is not finite).

    Raises:
      ValueError: mismatched shapes (as in ``elbo``; ``z`` must have ``mean``'s shape,
        ``baseline`` must broadcast to the batch shape), ``beta`` or ``baseline`` out of range.
      TypeError: non-real inputs, string or boolean numbers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.vae import elbo, score_function_elbo
      >>> x, out = jnp.array([[1.0, 0.0]]), jnp.array([[0.5, -1.0]])
      >>> m, lv, z = jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1))
      >>> bool(jnp.allclose(score_function_elbo(x, out, z, m, lv), elbo(x, out, m, lv)))
      True

    References:
      Williams (1992); Paisley, Blei and Jordan, "Variational Bayesian inference with stochastic
      search", ICML 2012; Ranganath, Gerrish and Blei, "Black box variational inference",
      AISTATS 2014; Mohamed et al., "Monte Carlo gradient estimation in machine learning",
      JMLR 21, 2020.
    """
    _check_likelihood(likelihood, decoder_logvar)
    mean, logvar = _posterior(mean, logvar)
    z = _checks.real_array(z, "z")
    _checks.same_shape(z, mean, "z", "mean")
    x, decoder_out = _data(x, decoder_out, mean.shape[:-1])
    lv = _decoder_logvar(decoder_logvar, decoder_out)
    beta = _beta(beta)
    if _checks.is_static_number(baseline) or isinstance(baseline, (bool, str, bytes)) or baseline is None:
        baseline = jnp.asarray(_checks.number(baseline, "baseline"))
    baseline = _checks.real_array(baseline, "baseline")
    _checks.broadcasts_into(baseline, mean.shape[:-1], "baseline", "the batch shape of mean")
    dtype = _checks.compute_dtype(x, decoder_out, z, mean, logvar, lv)
    event_ndim = x.ndim - (mean.ndim - 1)
    return _score_function_kernel(x, decoder_out, z, mean, logvar, lv, beta, baseline,
                                  likelihood=likelihood, event_ndim=event_ndim, dtype=dtype)


@_checks.kernel("likelihood", "event_ndim", "dtype")
def _score_function_kernel(x, decoder_out, z, mean, logvar, lv, beta, baseline, *, likelihood,
                           event_ndim, dtype):
    sg = jax.lax.stop_gradient
    rec = _log_lik(x, decoder_out, lv, likelihood, event_ndim, dtype)  # [B]
    log_q = _diag_gaussian(sg(z), mean, logvar, dtype)  # [B], depends on mean and logvar only
    reward = sg(rec - baseline.astype(dtype))  # [B]
    # The surrogate term is 0 in value; where the reward or log q is infinite (an impossible x,
    # a degenerate q) it is dropped rather than formed as inf * 0 or inf - inf = NaN (the ELBO
    # is then infinite itself): double where, so its gradient is 0 there, not NaN.
    ok = jnp.isfinite(reward) & jnp.isfinite(log_q)
    reward, log_q = jnp.where(ok, reward, 0), jnp.where(ok, log_q, 0)
    kl = divergences.gaussian_kl(mean.astype(dtype), logvar.astype(dtype))  # [B]
    return rec + reward * (log_q - sg(log_q)) - _weighted_kl(beta, kl, dtype)


# --------------------------------------------------------------------------------------------
# Importance weighting: the IWAE bound and log-likelihood estimates.
# --------------------------------------------------------------------------------------------


def iwae_log_weights(
    x: ArrayLike,
    decoder_out: ArrayLike,
    z: ArrayLike,
    mean: ArrayLike,
    logvar: ArrayLike,
    likelihood: str = "bernoulli",
    *,
    decoder_logvar: ArrayLike | None = None,
) -> jax.Array:
    """Log importance weights ``log p(x | z_i) + log p(z_i) - log q(z_i | x)``.

    Args:
      x: data, ``[*batch, *event]``.
      decoder_out: the decoder's outputs for each sample, ``[*sample, *batch, *event]``.
      z: the samples from ``q``, ``[*sample, *batch, D]`` (e.g. ``reparameterize(key, mean,
        logvar, (k,))``).
      mean: encoder means, ``[*batch, D]``.
      logvar: encoder log-variances, ``[*batch, D]``.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      decoder_logvar: gaussian only: a scalar or an array broadcastable to ``decoder_out``.

    Returns:
      ``[*sample, *batch]`` log weights (at least float32). Their mean over the sample axis is a
      (lower-variance) ELBO estimate; ``iwae_bound`` of them is ``L_k``.

    Raises:
      ValueError: mismatched shapes: ``mean``/``logvar`` without a batch axis, ``z`` not
        ``[*sample, *mean.shape]``, ``x`` not ``[*batch, *event]``, ``decoder_out`` not
        ``[*sample, *x.shape]``.
      TypeError: non-real inputs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.vae import iwae_log_weights
      >>> m = lv = jnp.zeros((3, 2))                        # q = p(z) = N(0, I): w = p(x | z)
      >>> z = jax.random.normal(jax.random.key(0), (5, 3, 2))
      >>> x, out = jnp.ones((3, 4)), jnp.zeros((5, 3, 4))   # logits 0: p(x | z) = 2^-4
      >>> bool(jnp.allclose(iwae_log_weights(x, out, z, m, lv), -4 * jnp.log(2.0)))
      True

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders (ICLR 2016), eq. 8.
    """
    _check_likelihood(likelihood, decoder_logvar)
    mean, logvar = _posterior(mean, logvar)
    z = _checks.real_array(z, "z")
    if z.ndim < mean.ndim or z.shape[z.ndim - mean.ndim:] != mean.shape:
        raise ValueError(f"`z` must have shape [*sample, *mean.shape] = [..., {', '.join(map(str, mean.shape))}], "
                         f"got z.shape={z.shape}")
    sample_shape = z.shape[: z.ndim - mean.ndim]
    x, decoder_out = _data(x, decoder_out, mean.shape[:-1], sample_shape)
    lv = _decoder_logvar(decoder_logvar, decoder_out)
    dtype = _checks.compute_dtype(x, decoder_out, z, mean, logvar, lv)
    event_ndim = x.ndim - (mean.ndim - 1)
    return _log_weights_kernel(x, decoder_out, z, mean, logvar, lv, likelihood=likelihood,
                               event_ndim=event_ndim, dtype=dtype)


@_checks.kernel("likelihood", "event_ndim", "dtype")
def _log_weights_kernel(x, decoder_out, z, mean, logvar, lv, *, likelihood, event_ndim, dtype):
    return _log_weights(x, decoder_out, z, mean, logvar, lv, likelihood, event_ndim, dtype)


def _log_weights(x, decoder_out, z, mean, logvar, lv, likelihood, event_ndim, dtype):
    x = jnp.broadcast_to(x, decoder_out.shape)  # the documented leading sample axes
    log_px_z = _log_lik(x, decoder_out, lv, likelihood, event_ndim, dtype)  # [k, B]
    log_pz = _diag_gaussian(z, jnp.zeros((), dtype), jnp.zeros((), dtype), dtype)  # [k, B]
    log_qz = _diag_gaussian(z, mean, logvar, dtype)  # [k, B]
    return log_px_z + log_pz - log_qz


def iwae_bound(log_weights: ArrayLike) -> jax.Array:
    """The importance-weighted bound ``log (1/k) sum_i w_i`` from log weights, stably.

    ``L_k = logsumexp_i(log w_i) - log k`` over axis 0 (the log-mean-exp). For ``k = 1`` it is the
    ELBO estimate; in expectation it rises with ``k`` to ``log p(x)``. Stable for any finite log
    weights (however large or negative); ``-inf`` weights (zero importance) are allowed.

    Args:
      log_weights: ``[k, *batch]`` log importance weights (e.g. from ``iwae_log_weights``).

    Returns:
      ``[*batch]`` bounds (at least float32).

    Raises:
      ValueError: ``log_weights`` is a scalar or has ``k = 0`` samples.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.vae import iwae_bound
      >>> round(float(iwae_bound(jnp.log(jnp.array([[1.0], [3.0]])))[0]), 4)  # log 2
      0.6931
      >>> float(iwae_bound(jnp.array([[-1e4], [-1e4]]))[0])
      -10000.0

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders (ICLR 2016), eq. 8 and
      Theorem 1.
    """
    lw = _checks.real_array(log_weights, "log_weights")
    if lw.ndim < 1 or lw.shape[0] == 0:
        raise ValueError(f"`log_weights` must be [k, *batch] with k >= 1 samples, got shape {lw.shape}")
    return _iwae_bound_kernel(lw, dtype=_checks.compute_dtype(lw))


@_checks.kernel("dtype")
def _iwae_bound_kernel(lw, *, dtype):
    return _log_mean_exp(lw.astype(dtype))


def _log_mean_exp(lw):
    return jax.nn.logsumexp(lw, axis=0) - jnp.log(jnp.asarray(lw.shape[0], lw.dtype))


def _split_decoder(out, likelihood, decoder_logvar):
    if isinstance(out, tuple):
        if likelihood != "gaussian" or len(out) != 2:
            raise ValueError("`decode_fn` may return a pair (mean, logvar) only for likelihood='gaussian'")
        if decoder_logvar is not None:
            raise ValueError("`decode_fn` returned a log-variance and `decoder_logvar` was given too")
        return out
    return out, decoder_logvar


def _check_fn(fn: Any, name: str, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"`{name}` must be a function {what}, got {type(fn).__name__}")


def sample_iwae_log_weights(
    key: jax.Array,
    encode_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    decode_fn: Callable[[jax.Array], Any],
    x: ArrayLike,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    likelihood: str = "bernoulli",
    decoder_logvar: ArrayLike | None = None,
) -> jax.Array:
    """Draws ``num_samples`` samples from ``q(z | x)`` per example and returns their log weights.

    The samples are drawn and decoded ``chunk_size`` at a time in a ``lax.map``, so memory holds
    one chunk of decoder outputs (``chunk_size * B`` images), not ``num_samples * B``; chunk ``c``
    draws its noise from ``fold_in(key, c)``.

    Args:
      key: PRNG key (required; ``None`` is a TypeError).
      encode_fn: ``x -> (mean, logvar)``, each ``[B, D]``.
      decode_fn: ``z [N, D] -> decoder_out [N, *event]`` (logits or means), or for a gaussian
        decoder with learned variance ``-> (mean, logvar)``, the log-variance a scalar or of the
        mean's shape.
      x: data, ``[B, *event]``.
      num_samples: ``k``, a positive Python int, a multiple of ``chunk_size``.
      chunk_size: samples per chunk, a positive Python int (default: all at once).
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      decoder_logvar: gaussian only: a fixed scalar log-variance.

    Returns:
      ``[k, B]`` log importance weights.

    Raises:
      ValueError: ``num_samples`` or ``chunk_size`` not positive, ``num_samples`` not a multiple
        of ``chunk_size``; ``x`` a scalar; ``encode_fn`` not returning ``[B, D]`` pairs,
        ``decode_fn`` not returning ``[N, *event]``; shapes as in ``iwae_log_weights``.
      TypeError: ``key`` not a PRNG key, ``encode_fn``/``decode_fn`` not callable,
        ``num_samples``/``chunk_size`` not ints (``2.5``, ``True``), non-real arrays.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.vae import sample_iwae_log_weights
      >>> enc = lambda x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
      >>> dec = lambda z: jnp.zeros((z.shape[0], 4))
      >>> sample_iwae_log_weights(jax.random.key(0), enc, dec, jnp.ones((3, 4)), 6, chunk_size=2).shape
      (6, 3)

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders (ICLR 2016), section 5.
    """
    key = _checks.key(key)
    _check_fn(encode_fn, "encode_fn", "x -> (mean, logvar)")
    _check_fn(decode_fn, "decode_fn", "z -> decoder_out")
    _check_likelihood(likelihood, decoder_logvar)
    x = _checks.real_array(x, "x")
    if x.ndim < 1:
        raise ValueError(f"`x` must be a batch [B, *event], got shape {x.shape}")
    k = _checks.positive_int(num_samples, "num_samples")
    c = k if chunk_size is None else _checks.positive_int(chunk_size, "chunk_size")
    if k % c:
        raise ValueError(f"`num_samples` ({k}) must be a multiple of `chunk_size` ({c})")
    if decoder_logvar is not None:
        decoder_logvar = _decoder_logvar(decoder_logvar, jnp.zeros(()))
        if decoder_logvar.ndim:
            raise ValueError("`decoder_logvar` must be a scalar here; return (mean, logvar) from "
                             "`decode_fn` for a learned variance")
    encoded = encode_fn(x)
    if not isinstance(encoded, (tuple, list)) or len(encoded) != 2:
        raise ValueError(f"`encode_fn` must return a pair (mean, logvar), got {type(encoded).__name__}")
    mean, logvar = _posterior(*encoded)
    if mean.ndim != 2 or mean.shape[0] != x.shape[0]:
        raise ValueError(f"`encode_fn` must return [B, D] with B = {x.shape[0]}, got {mean.shape}")
    b, d = mean.shape
    dtype = _checks.compute_dtype(x, mean, logvar)
    event = x.shape[1:]

    def chunk(i):
        z = _reparameterize_kernel(jax.random.fold_in(key, i), mean, logvar, sample_shape=(c,),
                                   dtype=dtype)  # [c, B, D]
        out = decode_fn(z.reshape(c * b, d))
        out, lv = _split_decoder(out, likelihood, decoder_logvar)
        out = _checks.real_array(out, "decode_fn(z)")
        if out.shape != (c * b, *event):
            raise ValueError(f"`decode_fn` must return [N, *event] = {(c * b, *event)} for z of shape "
                             f"{(c * b, d)} and x of shape {x.shape}, got {out.shape}")
        out = out.reshape((c, *x.shape))
        if lv is None:
            lv = jnp.zeros((), dtype)
        else:
            lv = _checks.real_array(lv, "the log-variance of decode_fn(z)")
            _checks.broadcasts_into(lv, (c * b, *event), "the log-variance of decode_fn(z)", "its mean")
            if lv.ndim:
                lv = jnp.reshape(jnp.broadcast_to(lv, (c * b, *event)), out.shape)
        return _log_weights(x, out, z, mean, logvar, lv, likelihood, x.ndim - 1, dtype)  # [c, B]

    lw = jax.lax.map(chunk, jnp.arange(k // c))  # [k / c, c, B]
    return lw.reshape(k, b)


def estimate_log_likelihood(
    key: jax.Array,
    encode_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    decode_fn: Callable[[jax.Array], Any],
    x: ArrayLike,
    num_samples: int,
    *,
    chunk_size: int | None = None,
    likelihood: str = "bernoulli",
    decoder_logvar: ArrayLike | None = None,
) -> jax.Array:
    """Estimates ``log p(x)`` by importance sampling from the encoder: the bound ``L_k``.

    ``log p(x) ~ log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x)``, ``z_i ~ q(z | x)``: the IWAE
    bound with ``k = num_samples`` samples, a stochastic lower bound in expectation that is
    consistent as ``k -> oo``. ``k = 5000`` is the protocol of Burda et al. (2016) for test
    log-likelihoods; ``-mean(estimate)`` is the reported NLL in nats. Chunked as in
    ``sample_iwae_log_weights``.

    Args:
      key: PRNG key (required).
      encode_fn: ``x -> (mean, logvar)``, each ``[B, D]``.
      decode_fn: ``z [N, D] -> decoder_out [N, *event]``, or ``(mean, logvar)`` (gaussian).
      x: data, ``[B, *event]``.
      num_samples: ``k``.
      chunk_size: samples decoded at once; ``num_samples`` must be a multiple of it.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      decoder_logvar: gaussian only: a fixed scalar log-variance.

    Returns:
      ``[B]`` estimates of ``log p(x)`` in nats.

    Raises:
      ValueError, TypeError: as in ``sample_iwae_log_weights``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.vae import estimate_log_likelihood
      >>> enc = lambda x: (jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2)))
      >>> dec = lambda z: jnp.zeros((z.shape[0], 4))        # p(x | z) = 2^-4 whatever z
      >>> est = estimate_log_likelihood(jax.random.key(0), enc, dec, jnp.ones((3, 4)), 10)
      >>> bool(jnp.allclose(est, -4 * jnp.log(2.0)))
      True

    References:
      Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders (ICLR 2016), section 5
      (k = 5000); Rezende, Mohamed & Wierstra (ICML 2014), Appendix E (importance sampling).
    """
    lw = sample_iwae_log_weights(key, encode_fn, decode_fn, x, num_samples, chunk_size=chunk_size,
                                 likelihood=likelihood, decoder_logvar=decoder_logvar)
    return _log_mean_exp(lw)
