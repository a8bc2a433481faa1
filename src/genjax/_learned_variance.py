"""Learned reverse-process variances: Nichol & Dhariwal's hybrid objective and its sampler (issue 18).

Private module: its public functions are re-exported by `genjax.diffusion`, which states the
conventions (0-based timesteps, `Schedule`, keys, static numbers).

Ho et al. (2020) fix the reverse variance to beta_t or tilde-beta_t (`sample`'s `variance`);
Improved DDPM (Nichol & Dhariwal 2021, section 3.1) learns it as an interpolation in the log
domain between those two bounds,

    log Sigma_theta(x_t, t) = v log beta_t + (1 - v) log tilde-beta_t          (their eq. 15)

with `v` a second output of the network (one value per data dimension). L_simple does not
depend on Sigma, so they train it with the variational bound and keep the mean on L_simple:

    L_hybrid = L_simple + lambda L_vlb,   lambda = 0.001                     (their eq. 16)

where the mean's gradient is stopped in L_vlb. L_vlb = sum_t L_t is estimated at the loss's one
random timestep as T L_t, with L_t in bits per dimension:

    L_t = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))       for t >= 1 (0-based: t > 0)
    L_0 = -log p_theta(x_0 | x_1), a Gaussian discretised to the data's 256 levels   (Ho et al. eq. 13)

`hybrid_loss` returns L_simple + lambda T L_t per example. That is the reference code's
objective (openai/improved-diffusion, `GaussianDiffusion.training_losses` with `learn_sigma`
and `rescale_learned_sigmas`: `mse + vb * T / 1000`, the same as lambda = 0.001 with the T L_t
estimate). Its network outputs an unbounded `r` and sets v = (r + 1) / 2; here `v` is the
interpolation weight itself, so a model with that head passes `(r + 1) / 2`.

Learned variances matter most with few steps: `learned_variance_sample` samples on a strided
subsequence of the timesteps (section 4: the betas recomputed from the kept abar's, `respace`),
where the learned interpolation moves with the new betas, unlike a fixed choice.

What differs from the reference code, and why:
- The discretised log-likelihood uses the exact normal CDF (`jax.scipy.special.log_ndtr`),
  not the tanh approximation with a 1e-12 floor; where a bin is under 1e-3 standard deviations
  wide it is the density times the width (the midpoint rule, relative error O(width^2)), so
  it stays finite for any scale and its gradients are never NaN.

References:
    A. Nichol, P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021
    (arXiv:2102.09672), eqs. (15)-(16), section 4 (strided sampling).
    J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
    eqs. (5) and (13).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr

from genjax import _backend, _checks, divergences
from genjax.diffusion import (
    _PREDICTIONS,
    Schedule,
    _callable,
    _check_clip,
    _check_sample_args,
    _check_schedule,
    _clip,
    _coef,
    _flag,
    _float_array,
    _noised,
    _simple_loss,
    _timestep,
    make_schedule,
    q_posterior,
)
from genjax._samplers import _x0_vp, publish, spaced_timesteps

__all__: list[str] = []  # private: genjax.diffusion re-exports the public functions

LearnedModelFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
_MIDPOINT_BELOW = 1e-3  # bins narrower than this many standard deviations use density x width
_LOG2 = math.log(2.0)


def discretized_gaussian_log_likelihood(x: Any, mean: Any, log_scale: Any, num_bins: int = 256) -> jax.Array:
    """log P(x) under N(mean, exp(log_scale)^2) discretised to `num_bins` levels on [-1, 1].

    The levels are -1, -1 + 2 / (num_bins - 1), ..., 1 (8-bit images scaled to [-1, 1]); the
    bin of level x is [x - h, x + h] with h = 1 / (num_bins - 1), and the end bins reach to
    -inf and +inf, so the probabilities of the `num_bins` levels sum to 1 for every mean and
    scale (Ho et al. 2020, eq. 13). Elementwise, in nats.

    Args:
        x: data on the levels, any shape (values between levels are scored by the bin around them).
        mean: broadcastable to `x`.
        log_scale: the log standard deviation, broadcastable to `x`.
        num_bins: the number of levels, at least 2 (static).

    Returns:
        float32 log-probabilities of `x`'s broadcast shape.

    Raises:
        ValueError: `num_bins` < 2.
        TypeError: non-real arrays, non-int `num_bins`.

    Examples:
        >>> levels = jnp.linspace(-1.0, 1.0, 256)
        >>> p = jnp.exp(discretized_gaussian_log_likelihood(levels, 0.1, jnp.log(0.3)))
        >>> bool(jnp.abs(p.sum() - 1.0) < 1e-5)
        True

    References:
        Ho et al. 2020, eq. (13); Nichol & Dhariwal 2021 (the decoder term L_0).
    """
    x = _checks.real_array(x, "x")
    mean = _checks.real_array(mean, "mean")
    log_scale = _checks.real_array(log_scale, "log_scale")
    bins = _checks.positive_int(num_bins, "num_bins")
    if bins < 2:
        raise ValueError(f"`num_bins` must be at least 2, got {bins}")
    try:
        jnp.broadcast_shapes(x.shape, mean.shape, log_scale.shape)
    except ValueError:
        raise ValueError(f"`x`, `mean` and `log_scale` must broadcast together, got shapes {x.shape}, {mean.shape} "
                         f"and {log_scale.shape}") from None
    return _discretized_ll(x, mean, log_scale, 1.0 / (bins - 1))


def _log_diff_ndtr(upper: jax.Array, lower: jax.Array) -> jax.Array:
    """log(Phi(upper) - Phi(lower)) for upper > lower, in whichever tail keeps digits."""
    flip = lower > 0.0  # both in the upper tail: Phi(u) - Phi(l) = Phi(-l) - Phi(-u)
    hi = jnp.where(flip, -lower, upper)
    lo = jnp.where(flip, -upper, lower)
    log_hi = log_ndtr(hi)
    return log_hi + jnp.log1p(-jnp.exp(jnp.minimum(log_ndtr(lo) - log_hi, -1e-30)))


def _discretized_ll(x, mean, log_scale, half):
    x, mean, log_scale = jnp.broadcast_arrays(x.astype(jnp.float32), mean.astype(jnp.float32),
                                              log_scale.astype(jnp.float32))
    inv = jnp.exp(-log_scale)
    centred = x - mean
    upper, lower = (centred + half) * inv, (centred - half) * inv
    first, last = x < -1.0 + half, x > 1.0 - half  # the end bins reach to -inf / +inf
    lower_end = log_ndtr(upper)  # log Phi(upper)
    upper_end = log_ndtr(-lower)  # log (1 - Phi(lower))
    width = 2.0 * half * inv  # the bin's width in standard deviations
    narrow = width < _MIDPOINT_BELOW
    # the middle bins: exact where the bin is wide enough, else log(density x width)
    safe_upper = jnp.where(narrow, 1.0, upper)
    safe_lower = jnp.where(narrow, 0.0, lower)
    exact = _log_diff_ndtr(safe_upper, safe_lower)
    z = centred * inv
    midpoint = -0.5 * jnp.square(z) - 0.5 * math.log(2.0 * math.pi) + jnp.log(jnp.where(narrow, width, 1.0))
    middle = jnp.where(narrow, midpoint, exact)
    return jnp.where(first, lower_end, jnp.where(last, upper_end, middle))


def learned_log_variance(schedule: Schedule, t: Any, v: Any) -> jax.Array:
    """log Sigma = v log beta_t + (1 - v) log tilde-beta_t (Nichol & Dhariwal 2021, eq. 15).

    `v` = 0 gives tilde-beta_t (`sample`'s "fixed_small"; at t = 0 its log is clipped to
    log tilde-beta_1, as `q_posterior`), `v` = 1 gives beta_t ("fixed_large"); values outside
    [0, 1] extrapolate in the log domain (the reference code does not clip the network's output).

    Args:
        schedule: the `Schedule`.
        t: int, `[]` or `[B]`, in `0 .. T-1`.
        v: the interpolation weight, `[B, ...]` (a network's second output).

    Returns:
        float32 `[B, ...]`, the log-variance of p_theta(x_{t-1} | x_t).
    """
    schedule = _check_schedule(schedule)
    v = _float_array(v, "v")
    t = _timestep(t, v, schedule)
    return _learned_log_variance(schedule, t, v)


def _learned_log_variance(schedule, t, v):
    small = _coef(schedule.posterior_log_variance_clipped, t, v)
    large = _coef(jnp.log(schedule.betas), t, v)
    return (v * large + (1.0 - v) * small).astype(jnp.float32)


def vlb_term(schedule: Schedule, x0: Any, xt: Any, t: Any, mean: Any, log_variance: Any) -> jax.Array:
    """L_t of the variational bound, per example, in bits per dimension.

        t > 0:  mean over the data axes of KL(q(x_{t-1} | x_t, x_0) || N(mean, exp(log_variance)))
        t = 0:  mean over the data axes of -log p(x_0), N(mean, exp(log_variance)) discretised
                to 256 levels on [-1, 1] (`discretized_gaussian_log_likelihood`)

    both divided by log 2 (Ho et al. 2020, eq. 5; 0-based t, so the decoder term is t = 0).
    With the forward posterior's own mean and variance (`q_posterior`) the KL is 0.

    Args:
        schedule: the `Schedule`.
        x0: the data `[B, ...]` in [-1, 1] (on the 256 levels for t = 0 to be a likelihood).
        xt: `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1`.
        mean: the model's mean of x_{t-1}, `[B, ...]`.
        log_variance: its log-variance, `[B, ...]` (e.g. `learned_log_variance`).

    Returns:
        float32 `[B]`.

    References:
        Ho et al. 2020, eq. (5); Nichol & Dhariwal 2021, section 3.1.
    """
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    for name, value in (("xt", xt), ("mean", mean), ("log_variance", log_variance)):
        _checks.same_shape(x0, _float_array(value, name), "x0", name)
    t = _timestep(t, x0, schedule)
    return _vlb_term(schedule, x0, jnp.asarray(xt), t, jnp.asarray(mean), jnp.asarray(log_variance))


def _vlb_term(schedule, x0, xt, t, mean, log_variance):
    axes = tuple(range(1, x0.ndim))
    dims = math.prod(x0.shape[1:])
    true_mean, _, true_log_var = q_posterior(schedule, x0, xt, t)
    kl = divergences.gaussian_kl(true_mean.astype(jnp.float32), true_log_var.astype(jnp.float32),
                                 mean.astype(jnp.float32), log_variance.astype(jnp.float32), axis=axes) / dims
    nll = -jnp.sum(_discretized_ll(x0, mean, 0.5 * log_variance, 1.0 / 255.0), axis=axes) / dims
    t = jnp.broadcast_to(t, (x0.shape[0],))
    return jnp.where(t == 0, nll, kl) / _LOG2


def _x0_from(schedule, xt, t, out, prediction):
    return _x0_vp(out, xt, _coef(schedule.sqrt_alphas_cumprod, t, xt),
                  _coef(schedule.sqrt_one_minus_alphas_cumprod, t, xt), prediction)


def _call_learned(model_fn, x, t, name="model_fn"):
    result = model_fn(x, t)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{name}(x_t, t) must return a pair (prediction, v) of arrays of x_t's shape, got "
                        f"{type(result).__name__}")
    out, v = (_float_array(r, f"{name}(x_t, t)[{i}]") for i, r in enumerate(result))
    _checks.same_shape(x, out, "x_t", f"{name}(x_t, t)[0]")
    _checks.same_shape(x, v, "x_t", f"{name}(x_t, t)[1]")
    return out.astype(jnp.float32), v.astype(jnp.float32)


def hybrid_loss(
    key: jax.Array,
    model_fn: LearnedModelFn,
    schedule: Schedule,
    x0: Any,
    vlb_weight: float = 0.001,
    prediction: str = "epsilon",
) -> jax.Array:
    """L_hybrid = L_simple + lambda T L_t per example (Nichol & Dhariwal 2021, eq. 16).

    The timestep and the noise are drawn as in `ddpm_loss` (the same key gives the same t and
    noise, so `vlb_weight=0` is `ddpm_loss` exactly). L_t is `vlb_term` at the drawn t, with the
    model's mean built from the *stopped* prediction (the mean learns from L_simple alone) and
    its log-variance from `v` (`learned_log_variance`): only `v` learns from the bound.

    Args:
        key: PRNG key (`jax.random.split(key)` gives the timesteps and the noise).
        model_fn: `(x_t [B, ...], t [B] int32) -> (prediction, v)`, both of x_t's shape.
        schedule: the `Schedule`.
        x0: the data `[B, ...]` in [-1, 1].
        vlb_weight: lambda, >= 0 (the paper's 0.001).
        prediction: "epsilon" (default), "x0" or "v": what the first output predicts.

    Returns:
        float32 `[B]`.

    References:
        Nichol & Dhariwal 2021, eq. (16) and section 3.1; openai/improved-diffusion's
        `training_losses` (`mse + vb * num_timesteps / 1000`).
    """
    key = _checks.key(key)
    _callable(model_fn, "model_fn")
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    weight = _checks.number(vlb_weight, "vlb_weight", low=0.0)
    t, noise, xt = _noised(key, schedule, x0)
    out, v = _call_learned(model_fn, xt, t)
    simple = _simple_loss(schedule, out, x0, t, noise, prediction)
    x0_hat = _x0_from(schedule, xt, t, jax.lax.stop_gradient(out), prediction)
    mean, _, _ = q_posterior(schedule, x0_hat, xt, t)
    log_var = _learned_log_variance(schedule, t, v)
    return simple + weight * schedule.num_timesteps * _vlb_term(schedule, x0, xt, t, mean, log_var)


def respace(schedule: Schedule, timesteps: Any) -> Schedule:
    """The schedule of the subsequence `timesteps` of `schedule` (Nichol & Dhariwal 2021, sec. 4).

    With the kept cumulative products abar_k = abar_{timesteps[k]} (ascending), the new betas
    are 1 - abar_k / abar_{k-1} (abar_{-1} = 1), so q(x_k | x_0) is unchanged at every kept
    timestep and the new schedule's posterior and variances are those of the shorter chain.
    A model trained on `schedule` is then called at `timesteps[k]` for step k.

    Args:
        schedule: the `Schedule` (concrete: this runs on the host, outside `jit`).
        timesteps: distinct ints in `0 .. T-1`, any order (e.g. `spaced_timesteps(T, n, "linspace")`).

    Returns:
        A `Schedule` with `len(timesteps)` steps.

    Raises:
        ValueError: empty, repeated or out-of-range timesteps.
    """
    import numpy as np

    schedule = _check_schedule(schedule)
    try:
        ts = np.asarray(timesteps)
    except jax.errors.TracerArrayConversionError:
        raise TypeError("`timesteps` must be concrete (respace runs on the host): call it outside jit") from None
    if ts.ndim != 1 or ts.size < 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"`timesteps` must be a non-empty 1-D array of ints, got {ts.dtype} of shape {ts.shape}")
    ts = np.sort(ts)
    T = schedule.num_timesteps
    if ts[0] < 0 or ts[-1] > T - 1 or np.any(np.diff(ts) == 0):
        raise ValueError(f"`timesteps` must be distinct ints in 0 .. {T - 1}, got {ts.tolist()}")
    abar = np.asarray(schedule.alphas_cumprod, np.float64)[ts]
    return make_schedule(1.0 - abar / np.concatenate([[1.0], abar[:-1]]))


def learned_variance_sample(
    key: jax.Array,
    model_fn: LearnedModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int | None = None,
    *,
    prediction: str = "epsilon",
    spacing: str = "linspace",
    clip_x0: tuple[float, float] | None = None,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Ancestral sampling with learned variances, on all T timesteps or a strided subsequence.

        timesteps t_0 < ... < t_{n-1} (`spaced_timesteps(T, n, spacing)`), s = respace(schedule, them)
        for k = n-1 .. 0:  (out, v) = model_fn(x, t_k);  x0_hat = x0 from out (clipped to `clip_x0`)
                           x = mean of q_s(x_{k-1} | x_k, x0_hat) + exp(learned_log_variance(s, k, v) / 2) z
        (no noise at k = 0)

    With `num_steps=None` (all T steps) and v = 0 or 1 everywhere this is `sample` with
    "fixed_small" or "fixed_large". The noise is drawn as in `sample`: the start from
    `split(key)[0]`, step k's from `fold_in(split(key)[1], k)`. One `lax.scan`, jitted with
    `model_fn` static: the same `model_fn` object and shape compile once.

    Args:
        key: PRNG key.
        model_fn: `(x_t [B, ...], t [B] int32) -> (prediction, v)`, both of x_t's shape.
        schedule: the training `Schedule`.
        shape: the batch shape `(B, ...)`.
        num_steps: None (T) or 1 .. T.
        prediction: "epsilon", "x0" or "v".
        spacing: the subsequence, as `spaced_timesteps` ("linspace": the reference code's
            evenly strided steps, from T-1 to 0).
        clip_x0: None, or the data range (low, high).
        return_trajectory: also return the start noise and every state, `[n + 1, B, ...]`.

    Returns:
        x_0 `[B, ...]`, or `(x_0, trajectory)`.

    References:
        Nichol & Dhariwal 2021, eq. (15) and section 4.
    """
    _checks.key(key)
    _callable(model_fn, "model_fn")
    shape = _check_sample_args(key, model_fn, schedule, shape)
    T = schedule.num_timesteps
    n = T if num_steps is None else _checks.positive_int(num_steps, "num_steps")
    if n > T:
        raise ValueError(f"`num_steps` must be at most num_timesteps = {T}, got {n}")
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    ts = spaced_timesteps(T, n, spacing)[::-1].copy() if n < T else jnp.arange(T, dtype=jnp.int32)
    sub = respace(schedule, ts) if n < T else schedule
    return _learned_sample(key, sub, jnp.asarray(ts, jnp.int32), model_fn, shape, prediction, _check_clip(clip_x0),
                           _flag(return_trajectory, "return_trajectory"))


@functools.partial(_backend.jit, static_argnums=(3, 4, 5, 6, 7))
def _learned_sample(key, sub, ts, model_fn, shape, prediction, clip_x0, return_trajectory):
    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape, jnp.float32)
    b = shape[0]

    def body(x, k):
        out, v = _call_learned(model_fn, x, jnp.full((b,), ts[k], jnp.int32))
        x0 = _clip(_x0_from(sub, x, k, out, prediction), clip_x0)
        mean, _, _ = q_posterior(sub, x0, x, k)
        sigma = jnp.where(k > 0, jnp.exp(0.5 * _learned_log_variance(sub, k, v)), 0.0)
        x = mean + sigma * jax.random.normal(jax.random.fold_in(step_key, k), shape, jnp.float32)
        return x, (x if return_trajectory else None)

    x_final, xs = jax.lax.scan(body, x, jnp.arange(ts.shape[0] - 1, -1, -1, dtype=jnp.int32))
    if return_trajectory:
        return x_final, jnp.concatenate([x[None], xs], axis=0)
    return x_final


PUBLIC = (
    "discretized_gaussian_log_likelihood", "learned_log_variance", "vlb_term", "hybrid_loss", "respace",
    "learned_variance_sample",
)
publish(globals(), PUBLIC)
