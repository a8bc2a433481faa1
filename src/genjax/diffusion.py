"""Denoising diffusion: variance schedules, the forward process, DDPM and DDIM sampling.

A diffusion model adds Gaussian noise to data in `T` small steps,

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),    abar_t = prod_{s <= t} (1 - beta_s),

and learns to undo them with a denoiser `eps_fn(x_t, t) -> eps_hat` trained to predict the noise
(Ho et al. 2020). Sampling runs the learned reverse chain: ancestral DDPM sampling, or DDIM
(Song et al. 2021), which reuses the same denoiser on any subsequence of the timesteps.

Conventions shared by every function:

- **Timesteps are 0-based**: `t` in `0 .. T-1`, where index `t` is step `t + 1` of the papers
  (so `x_0` is the data and `q_sample(schedule, x0, t=0, noise)` is the first noisy state); this
  is the indexing of diffusers' schedulers. `abar_t` is `schedule.alphas_cumprod[t]`, and "before
  step 0" the cumulative product is 1. A timestep is a Python int, an int array of shape `[]`, or
  an int array of shape `[B]` with one entry per example (the leading axis of `x`); anything
  else raises `ValueError`. **Out of range:** a concrete `t` (a Python int, a NumPy or an eager
  JAX array) outside `0 .. T-1` is a `ValueError`, and so is a `ddim_step` `t_prev` outside
  `-1 .. t-1`. A traced timestep (inside `jit`/`vmap`/`scan`) cannot be checked: it is clipped
  with `jnp.clip` into `0 .. T-1` (`t_prev` into `-1 .. t-1`), never wrapped around, the same
  way by every function. To catch traced out-of-range timesteps, check them in the caller (e.g.
  with `jax.experimental.checkify.check`).
- **Static numbers** (betas, `s`, `max_beta`, `eta`, the `clip_x0` bounds) given as Python
  numbers are checked against their domain (`ValueError`, NaN included); strings, booleans and
  None are a `TypeError`. Integer counts (`num_timesteps`, `num_steps`, `shape` entries) must be
  Python ints: `2.5` and `True` are a `TypeError`, never truncated. Data arrays are real
  (integer and boolean inputs are promoted to float32; complex, strings and None are a
  `TypeError`), as `genjax._checks` states for all math modules.
- **A denoiser** is `eps_fn(x_t, t) -> predicted noise`, with `x_t` `[B, ...]`, `t` an int32
  array `[B]`, and an output of `x_t`'s shape.
- **Schedules** are computed on the host in float64 NumPy (`linear_beta_schedule`,
  `cosine_beta_schedule`) and `make_schedule` stores every derived quantity as float32 JAX
  arrays in a `Schedule` pytree, which functions take as an ordinary (traced) argument. The
  schedules and the DDPM/DDIM steps follow diffusers' `DDPMScheduler` / `DDIMScheduler`
  (`linear` and `squaredcos_cap_v2` betas, `add_noise`, `step`), which the tests check.
- **Keys** are never defaulted where a function always samples (first argument). The one
  listed exception to "key first" is `ddim_step(..., eta, key=None)`: the key is needed only for
  `eta > 0` (a concrete `eta > 0`, or a traced `eta`, with `key=None` is a `TypeError`).
- Pure functions of their arguments, safe under `jit`, `vmap` and `grad`. The samplers run the
  whole chain as one `lax.scan` and are jitted with the denoiser as a static argument, so
  calling them again with the same `eps_fn` object, schedule and shape does not recompile; to
  sample with new parameters without recompiling, jit a function of the parameters that builds
  `eps_fn` inside (see `sample`).

References:
    J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020
    (arXiv:2006.11239): eqs. (2)-(4) forward process, (6)-(7) posterior, (11) and Algorithm 2
    sampling, (14) the simple loss; the linear schedule 1e-4 .. 0.02 (section 4).
    A. Nichol, P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021
    (arXiv:2102.09672), eq. (17): the cosine schedule with s = 0.008, betas clipped at 0.999.
    J. Song, C. Meng, S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021
    (arXiv:2010.02502), eqs. (12) and (16): the DDIM step and its sigma_t(eta).
    T. Salimans, J. Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", ICLR
    2022 (arXiv:2202.00512), section 4: the v-parameterisation.
    diffusers, `src/diffusers/schedulers/scheduling_ddpm.py` and `scheduling_ddim.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from genjax import _backend, _checks

__all__ = [
    "Schedule",
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "make_schedule",
    "q_step",
    "q_sample",
    "q_posterior",
    "predict_x0",
    "predict_eps",
    "v_target",
    "to_eps_fn",
    "ddpm_loss",
    "ddpm_step",
    "sample",
    "ddim_timesteps",
    "ddim_step",
    "ddim_sample",
]

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
Variance = Literal["fixed_small", "fixed_large"]
Prediction = Literal["epsilon", "x0", "v"]
_VARIANCES = ("fixed_small", "fixed_large")
_PREDICTIONS = ("epsilon", "x0", "v")


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def _num_timesteps(num_timesteps: Any, name: str = "num_timesteps") -> int:
    return _checks.positive_int(num_timesteps, name)


def linear_beta_schedule(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    """The linear variance schedule of Ho et al. (2020): `T` betas evenly spaced in [start, end].

        beta_t = beta_start + (beta_end - beta_start) t / (T - 1),   t = 0 .. T-1

    The same betas as diffusers' `beta_schedule="linear"` (`torch.linspace(beta_start, beta_end,
    T)`), here in float64.

    Args:
        num_timesteps: T >= 1 (Ho et al. use 1000; a single step gives `[beta_start]`).
        beta_start: beta of the first step, in (0, 1).
        beta_end: beta of the last step, in (0, 1), at least `beta_start`.

    Returns:
        float64 NumPy array `[T]`; pass it to `make_schedule`.

    Raises:
        ValueError: a beta outside (0, 1) (NaN included) or `beta_start > beta_end`;
            `num_timesteps < 1`.
        TypeError: a string, bool or None beta; a `num_timesteps` that is not a Python int.

    Examples:
        >>> betas = linear_beta_schedule(1000)
        >>> float(betas[0]), float(betas[-1])
        (0.0001, 0.02)

    References:
        Ho et al. 2020, section 4 (T = 1000, beta from 1e-4 to 0.02).
    """
    import numpy as np

    T = _num_timesteps(num_timesteps)
    start = _static_number(beta_start, "beta_start", 0.0, 1.0, low_open=True, high_open=True)
    end = _static_number(beta_end, "beta_end", 0.0, 1.0, low_open=True, high_open=True)
    if start > end:
        raise ValueError(f"`beta_start` must be at most `beta_end`, got beta_start={beta_start!r} > "
                         f"beta_end={beta_end!r} (betas increase along the chain)")
    return np.linspace(start, end, T, dtype=np.float64)


def cosine_beta_schedule(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999):
    """The cosine schedule of Nichol & Dhariwal (2021), eq. (17).

        f(u) = cos^2(pi/2 (u + s) / (1 + s)),   abar(u) = f(u) / f(0),
        beta_t = min(1 - abar((t + 1) / T) / abar(t / T), max_beta),   t = 0 .. T-1

    so that, before clipping, `prod_{s <= t} (1 - beta_s) = f((t + 1) / T) / f(0)`. The last beta
    is always clipped (f(1) = 0). The same betas as diffusers' `beta_schedule="squaredcos_cap_v2"`
    (`betas_for_alpha_bar`), which uses s = 0.008 and max_beta = 0.999.

    Args:
        num_timesteps: T >= 1.
        s: the small offset that keeps beta_0 from being vanishingly small; a finite number >= 0.
        max_beta: upper clip for each beta, in (0, 1), "to prevent singularities near t = T". 1
            itself is rejected: the last beta would be 1 (abar = 0, zero terminal SNR), where
            x_0 cannot be recovered from a noise prediction (1 / sqrt(abar_t) is infinite).

    Returns:
        float64 NumPy array `[T]`; pass it to `make_schedule`.

    Raises:
        ValueError: `s` negative, infinite or NaN; `max_beta` outside (0, 1); `num_timesteps < 1`.
        TypeError: a string, bool or None `s`/`max_beta`; a non-int `num_timesteps`.

    Examples:
        >>> betas = cosine_beta_schedule(1000)
        >>> float(betas[-1])
        0.999

    References:
        Nichol & Dhariwal 2021, section 3.2 and eq. (17).
    """
    import numpy as np

    T = _num_timesteps(num_timesteps)
    s = _static_number(s, "s", 0.0)
    max_beta = _static_number(max_beta, "max_beta", 0.0, 1.0, low_open=True, high_open=True)
    u = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((u + s) / (1.0 + s) * np.pi / 2.0) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    if not np.all((betas > 0.0) & (betas < 1.0)):
        raise ValueError(f"`s`={s!r} gives betas outside (0, 1) for T = {T}; use a small offset such as 0.008")
    return betas


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Schedule:
    """A variance schedule with every quantity the forward and reverse processes need.

    Every field is a float32 array `[T]` indexed by the 0-based timestep t (built by
    `make_schedule` from float64 betas). With alpha_t = 1 - beta_t and
    abar_t = prod_{s <= t} alpha_s:

    Attributes:
        betas: beta_t.
        alphas: alpha_t = 1 - beta_t.
        alphas_cumprod: abar_t.
        alphas_cumprod_prev: abar_{t-1}, with abar_{-1} = 1.
        sqrt_alphas_cumprod: sqrt(abar_t).
        sqrt_one_minus_alphas_cumprod: sqrt(1 - abar_t).
        sqrt_recip_alphas_cumprod: 1 / sqrt(abar_t).
        sqrt_recipm1_alphas_cumprod: sqrt(1 / abar_t - 1).
        posterior_variance: tilde-beta_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)  (0 at t = 0).
        posterior_log_variance_clipped: log tilde-beta_t, with the t = 0 entry (log 0) replaced by
            log tilde-beta_1, as in Ho et al.'s code (`posterior_log_variance_clipped`).
        posterior_mean_coef1: sqrt(abar_{t-1}) beta_t / (1 - abar_t), the weight of x_0.
        posterior_mean_coef2: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t), the weight of x_t.

    It is a pytree (all fields are leaves), so it can be passed through `jit`, `vmap` or stored
    in a training state. `num_timesteps` is static (the shape of the arrays).
    """

    betas: jax.Array  # [T]
    alphas: jax.Array  # [T]
    alphas_cumprod: jax.Array  # [T]
    alphas_cumprod_prev: jax.Array  # [T]
    sqrt_alphas_cumprod: jax.Array  # [T]
    sqrt_one_minus_alphas_cumprod: jax.Array  # [T]
    sqrt_recip_alphas_cumprod: jax.Array  # [T]
    sqrt_recipm1_alphas_cumprod: jax.Array  # [T]
    posterior_variance: jax.Array  # [T]
    posterior_log_variance_clipped: jax.Array  # [T]
    posterior_mean_coef1: jax.Array  # [T]
    posterior_mean_coef2: jax.Array  # [T]

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps (static)."""
        return int(self.betas.shape[0])


def make_schedule(betas: ArrayLike) -> Schedule:
    """Precomputes every quantity of the diffusion with variances `betas`, in float64.

    See `Schedule` for the formulas. The computation runs on the host in float64 NumPy (the
    cumulative product of 1000 factors loses about 4 digits in float32) and the results are
    stored as float32 JAX arrays. Call it outside `jit` (the betas must be concrete).

    Args:
        betas: `[T]` real numbers in (0, 1): a NumPy/JAX array or a sequence. A beta of 1 (zero
            terminal SNR) is rejected: x_0 could not be recovered from a noise prediction there.

    Returns:
        The `Schedule`.

    Raises:
        TypeError: `betas` is traced (inside `jit`), or not real (strings, complex, None).
        ValueError: `betas` is not a non-empty 1-D array of numbers in (0, 1) (NaN included), or
            a derived quantity is not finite in float32 (abar_t underflows, or 1 - abar_t rounds
            to 0): the samplers would divide by zero.

    Examples:
        >>> sched = make_schedule(linear_beta_schedule(1000))
        >>> sched.num_timesteps, sched.alphas_cumprod.dtype
        (1000, dtype('float32'))
    """
    import numpy as np

    if betas is None or isinstance(betas, (str, bytes)):
        raise TypeError(f"`betas` must be an array of real numbers, got {betas!r}")
    try:
        raw = np.asarray(betas)
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)
                or raw.dtype == np.bool_ or raw.dtype == object):
            raise TypeError(f"dtype {raw.dtype} is not real")
        b = raw.astype(np.float64)
    except jax.errors.TracerArrayConversionError:
        raise TypeError("`betas` must be concrete (make_schedule runs on the host): call it outside jit") from None
    except (TypeError, ValueError) as err:
        raise TypeError(f"`betas` must be an array of real numbers, got {type(betas).__name__}: {err}") from err
    if b.ndim != 1 or b.shape[0] < 1:
        raise ValueError(f"`betas` must be a non-empty 1-D array [T], got shape {b.shape}")
    if not np.all((b > 0.0) & (b < 1.0)):
        bad = b[~((b > 0.0) & (b < 1.0))]
        raise ValueError(f"every beta must lie in (0, 1); got {bad.size} outside, e.g. {bad[0]!r}")
    with np.errstate(all="ignore"):  # an underflowing abar is reported below, by name
        alphas = 1.0 - b
        abar = np.cumprod(alphas)
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        post_var = b * (1.0 - abar_prev) / (1.0 - abar)
        # post_var[0] = 0 exactly (abar_prev = 1): clip the log as Ho et al. do.
        log_floor = post_var[1] if b.shape[0] > 1 else b[0]
        post_log_var = np.log(np.concatenate([[log_floor], post_var[1:]]))
        arrays = dict(
            betas=b,
            alphas=alphas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=np.sqrt(abar),
            sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - abar),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / abar),
            sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / abar - 1.0),
            posterior_variance=post_var,
            posterior_log_variance_clipped=post_log_var,
            posterior_mean_coef1=np.sqrt(abar_prev) * b / (1.0 - abar),
            posterior_mean_coef2=np.sqrt(alphas) * (1.0 - abar_prev) / (1.0 - abar),
        )
    for name, value in arrays.items():
        with np.errstate(all="ignore"):
            stored = value.astype(np.float32)
        if not np.all(np.isfinite(stored)) or (name == "alphas_cumprod" and not np.all(stored > 0)):
            raise ValueError(
                f"the schedule's `{name}` is not finite (or 0) in float32 (e.g. the cumulative product of the "
                "alphas underflows, or a beta is so small that 1 - abar_t rounds to 0): use fewer or "
                "smaller/larger betas")
    return Schedule(**{k: jnp.asarray(v, dtype=jnp.float32) for k, v in arrays.items()})


# --------------------------------------------------------------------------------------------
# Validation helpers (static, at trace time)
# --------------------------------------------------------------------------------------------


def _check_schedule(schedule: Any) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"`schedule` must be a genjax.diffusion.Schedule (from make_schedule), got {type(schedule).__name__}")
    shape = jnp.shape(schedule.betas)
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"`schedule` must hold arrays [T] with T >= 1 (from make_schedule), got "
                         f"betas of shape {shape}")
    return schedule


def _static_number(value: Any, name: str, low: float | None = None, high: float | None = None, **kw) -> float:
    """A concrete number in the interval, as a Python float (schedules are built on the host)."""
    out = _checks.number(value, name, low, high, **kw)
    if isinstance(out, float):
        return out
    if not _checks.is_concrete(out):
        raise TypeError(f"`{name}` must be a concrete number (schedules are built on the host, outside "
                        "jit), got a traced value")
    return _checks.number(float(out), name, low, high, **kw)


def _float_array(x: ArrayLike, name: str) -> jax.Array:
    arr = _checks.float_array(x, name)
    if arr.ndim < 1:
        raise ValueError(f"`{name}` must be a batch [B, ...] with at least one axis, got a scalar")
    return arr


def _timestep(t: ArrayLike, x: jax.Array, schedule: Schedule, name: str = "t", low: int = 0) -> jax.Array:
    """`t` as int32 of shape [] or [B] (B = x.shape[0]) in [low, T); ValueError/TypeError otherwise.

    A concrete `t` out of range is a ValueError; a traced one is clipped into [low, T - 1].
    """
    with jax.ensure_compile_time_eval():  # a Python/NumPy timestep stays concrete (checkable) inside jit
        arr = _checks.int_array(t, name)
    if not (arr.ndim == 0 or (arr.ndim == 1 and arr.shape[0] == x.shape[0])):
        raise ValueError(
            f"`{name}` must be a scalar or have shape [B] = ({x.shape[0]},) (one timestep per example of "
            f"the batch), got shape {arr.shape} for a batch of shape {x.shape}"
        )
    T = schedule.num_timesteps
    what = " (-1 is the end of the chain)" if low < 0 else ""
    _checks.int_in_range(arr, name, low, T, f" for a schedule of T = {T} steps{what}")
    return jnp.clip(arr.astype(jnp.int32), low, T - 1)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a Python bool, got {value!r}")
    return value


def _callable(fn: Any, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"`{name}` must be a callable (x_t [B, ...], t [B] int32) -> [B, ...], got "
                        f"{type(fn).__name__}")


def _sqrt0(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a finite gradient at 0 (0 there; the double where keeps sqrt' = inf out)."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _coef(values: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
    """values[t] shaped to broadcast against x: [] or [B, 1, ..., 1]."""
    c = values[t]
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def _finish(y: jax.Array, like: jax.Array) -> jax.Array:
    return y.astype(like.dtype)


def _clip(x0: jax.Array, clip_x0: tuple[float, float] | None) -> jax.Array:
    if clip_x0 is None:
        return x0
    return jnp.clip(x0, clip_x0[0], clip_x0[1])


def _check_clip(clip_x0: Any) -> tuple[float, float] | None:
    """None, or a pair of concrete numbers low < high (infinities allowed: a one-sided clip)."""
    if clip_x0 is None:
        return None
    if isinstance(clip_x0, (str, bytes)) or not hasattr(clip_x0, "__len__") or len(clip_x0) != 2:
        raise ValueError(f"`clip_x0` must be None or a pair (low, high), got {clip_x0!r}")
    lo, hi = (_static_number(v, "clip_x0", finite=False) for v in clip_x0)
    if not lo < hi:
        raise ValueError(f"`clip_x0` must satisfy low < high, got {clip_x0!r}")
    return (lo, hi)


# --------------------------------------------------------------------------------------------
# The forward process
# --------------------------------------------------------------------------------------------


def q_step(schedule: Schedule, x_prev: ArrayLike, t: ArrayLike, noise: ArrayLike) -> jax.Array:
    """One forward step: a sample of q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I).

        x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise

    With 0-based `t`, `x_prev` is the state before step t (the data for t = 0).

    Args:
        schedule: the `Schedule`.
        x_prev: `[B, ...]`, float.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        noise: standard normal noise of `x_prev`'s shape.

    Returns:
        x_t, `[B, ...]` in `x_prev`'s dtype.

    Examples:
        >>> sched = make_schedule(linear_beta_schedule(10))
        >>> q_step(sched, jnp.ones((2, 3)), 0, jnp.zeros((2, 3))).shape
        (2, 3)

    References:
        Ho et al. 2020, eq. (2).
    """
    schedule = _check_schedule(schedule)
    x_prev = _float_array(x_prev, "x_prev")
    noise = _float_array(noise, "noise")
    _checks.same_shape(x_prev, noise, "x_prev", "noise")
    t = _timestep(t, x_prev, schedule)
    y = jnp.sqrt(_coef(schedule.alphas, t, x_prev)) * x_prev + jnp.sqrt(_coef(schedule.betas, t, x_prev)) * noise
    return _finish(y, x_prev)


def q_sample(schedule: Schedule, x0: ArrayLike, t: ArrayLike, noise: ArrayLike) -> jax.Array:
    """A sample of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) in closed form.

        x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise

    This is diffusers' `add_noise(original_samples, noise, timesteps)`.

    Args:
        schedule: the `Schedule`.
        x0: data `[B, ...]`, float.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        noise: standard normal noise of `x0`'s shape.

    Returns:
        x_t, `[B, ...]` in `x0`'s dtype.

    Examples:
        >>> sched = make_schedule(linear_beta_schedule(1000))
        >>> x = q_sample(sched, jnp.ones((2, 2)), jnp.array([0, 999]), jnp.zeros((2, 2)))
        >>> [round(float(v), 4) for v in x[:, 0]]
        [0.9999, 0.0064]

    References:
        Ho et al. 2020, eq. (4).
    """
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    noise = _float_array(noise, "noise")
    _checks.same_shape(x0, noise, "x0", "noise")
    t = _timestep(t, x0, schedule)
    y = _coef(schedule.sqrt_alphas_cumprod, t, x0) * x0 + _coef(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise
    return _finish(y, x0)


def q_posterior(
    schedule: Schedule, x0: ArrayLike, xt: ArrayLike, t: ArrayLike
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The forward-process posterior q(x_{t-1} | x_t, x_0) = N(mean, variance I).

        mean     = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
        variance = tilde-beta_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

    For t = 0 ("x_{-1}" is the data) the mean is x_0 and the variance 0; `log_variance` is then
    clipped to log tilde-beta_1 (`Schedule.posterior_log_variance_clipped`).

    Args:
        schedule: the `Schedule`.
        x0: `[B, ...]`.
        xt: `[B, ...]`, the same shape.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).

    Returns:
        `(mean, variance, log_variance)`, each of `x0`'s shape and dtype.

    References:
        Ho et al. 2020, eqs. (6)-(7).
    """
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    xt = _float_array(xt, "xt")
    _checks.same_shape(x0, xt, "x0", "xt")
    t = _timestep(t, x0, schedule)
    mean = _coef(schedule.posterior_mean_coef1, t, x0) * x0 + _coef(schedule.posterior_mean_coef2, t, x0) * xt
    var = jnp.broadcast_to(_coef(schedule.posterior_variance, t, x0), x0.shape)
    log_var = jnp.broadcast_to(_coef(schedule.posterior_log_variance_clipped, t, x0), x0.shape)
    return _finish(mean, x0), _finish(var, x0), _finish(log_var, x0)


def predict_x0(schedule: Schedule, xt: ArrayLike, t: ArrayLike, eps: ArrayLike) -> jax.Array:
    """The data that `xt` came from, given its noise: q_sample solved for x_0.

        x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)

    Args:
        schedule: the `Schedule`.
        xt: `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        eps: (predicted) noise of `xt`'s shape.

    Returns:
        x0_hat, `[B, ...]`.

    References:
        Ho et al. 2020, eq. (15).
    """
    schedule = _check_schedule(schedule)
    xt = _float_array(xt, "xt")
    eps = _float_array(eps, "eps")
    _checks.same_shape(xt, eps, "xt", "eps")
    t = _timestep(t, xt, schedule)
    y = _coef(schedule.sqrt_recip_alphas_cumprod, t, xt) * xt - _coef(schedule.sqrt_recipm1_alphas_cumprod, t, xt) * eps
    return _finish(y, xt)


def predict_eps(schedule: Schedule, xt: ArrayLike, t: ArrayLike, x0: ArrayLike) -> jax.Array:
    """The noise that took `x0` to `xt`: q_sample solved for the noise.

        eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)

    Args:
        schedule: the `Schedule`.
        xt: `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        x0: the data (or its prediction), of `xt`'s shape.

    Returns:
        eps, `[B, ...]`.
    """
    schedule = _check_schedule(schedule)
    xt = _float_array(xt, "xt")
    x0 = _float_array(x0, "x0")
    _checks.same_shape(xt, x0, "xt", "x0")
    t = _timestep(t, xt, schedule)
    y = (xt - _coef(schedule.sqrt_alphas_cumprod, t, xt) * x0) / _coef(schedule.sqrt_one_minus_alphas_cumprod, t, xt)
    return _finish(y, xt)


def v_target(schedule: Schedule, x0: ArrayLike, t: ArrayLike, noise: ArrayLike) -> jax.Array:
    """The velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022).

    Args:
        schedule: the `Schedule`.
        x0: the data, `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        noise: the noise of `x0`'s shape that `q_sample` adds.

    Returns:
        v, `[B, ...]`.
    """
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    noise = _float_array(noise, "noise")
    _checks.same_shape(x0, noise, "x0", "noise")
    t = _timestep(t, x0, schedule)
    y = _coef(schedule.sqrt_alphas_cumprod, t, x0) * noise - _coef(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0
    return _finish(y, x0)


def to_eps_fn(model_fn: EpsFn, schedule: Schedule, prediction: Prediction = "epsilon") -> EpsFn:
    """Wraps a network that predicts x_0 or v as a noise predictor, for the samplers.

        x0:  eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
        v:   eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v_hat

    Args:
        model_fn: `(x_t, t) -> prediction`, with `t` an int array `[B]`.
        schedule: the `Schedule`.
        prediction: what `model_fn` predicts: "epsilon" (returned unchanged), "x0" or "v".

    Returns:
        `eps_fn(x_t, t) -> predicted noise` (its `t` is checked and clipped as every timestep).

    Raises:
        TypeError: `model_fn` not callable, `schedule` not a `Schedule`.
        ValueError: an unknown `prediction`.
    """
    _callable(model_fn, "model_fn")
    schedule = _check_schedule(schedule)
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    if prediction == "epsilon":
        return model_fn

    def eps_fn(xt, t):
        xt = _float_array(xt, "xt")
        t = _timestep(t, xt, schedule)
        out = model_fn(xt, t)
        if prediction == "x0":
            return predict_eps(schedule, xt, t, out)
        out = _float_array(out, "model_fn(xt, t)")
        _checks.same_shape(xt, out, "xt", "model_fn(xt, t)")
        sqrt_abar = _coef(schedule.sqrt_alphas_cumprod, t, xt)
        return _finish(_coef(schedule.sqrt_one_minus_alphas_cumprod, t, xt) * xt + sqrt_abar * out, xt)

    return eps_fn


def ddpm_loss(
    key: jax.Array, eps_fn: EpsFn, schedule: Schedule, x0: ArrayLike, prediction: Prediction = "epsilon"
) -> jax.Array:
    """The simple denoising loss of Ho et al. (2020), per example.

        t ~ U{0, ..., T-1},  eps ~ N(0, I),  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
        loss_i = mean over the data axes of (eps_fn(x_t, t) - eps)^2

    `jnp.mean(ddpm_loss(...))` is L_simple (eq. 14; the mean over the data axes instead of the
    sum only rescales it). With `prediction="x0"` or `"v"`, `eps_fn` is a network predicting x_0
    or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 and the target changes accordingly (sample
    with `to_eps_fn(model_fn, schedule, prediction)`).

    Args:
        key: PRNG key; the timesteps and the noise are drawn from `jax.random.split(key)`.
        eps_fn: the denoiser `(x_t [B, ...], t [B] int32) -> [B, ...]`.
        schedule: the `Schedule`.
        x0: a data batch `[B, ...]`, float.
        prediction: "epsilon" (default), "x0" or "v".

    Returns:
        float32 `[B]`, the loss of each example (at its own random timestep).

    Raises:
        ValueError: the denoiser's output does not have the shape of `x0`; an unknown `prediction`.
        TypeError: `key` None or not a PRNG key; `eps_fn` not callable; complex/string/None `x0`.

    Examples:
        >>> sched = make_schedule(linear_beta_schedule(100))
        >>> ddpm_loss(jax.random.key(0), lambda x, t: jnp.zeros_like(x), sched, jnp.ones((4, 2))).shape
        (4,)

    References:
        Ho et al. 2020, Algorithm 1 and eq. (14); Salimans & Ho 2022 (v).
    """
    key = _checks.key(key)
    _callable(eps_fn, "eps_fn")
    schedule = _check_schedule(schedule)
    x0 = _float_array(x0, "x0")
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    t, noise, xt = _noised(key, schedule, x0)
    out = eps_fn(xt, t)
    if jnp.shape(out) != x0.shape:
        raise ValueError(
            f"the denoiser returned shape {jnp.shape(out)} for inputs of shape {x0.shape}; they must agree")
    return _simple_loss(schedule, out, x0, t, noise, prediction)


def _noised(key: jax.Array, schedule: Schedule, x0: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The training draw of `ddpm_loss`: (t [B] ~ U{0..T-1}, noise, x_t) from `split(key)`."""
    t_key, noise_key = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps, dtype=jnp.int32)  # [B]
    noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
    return t, noise, q_sample(schedule, x0, t, noise)


def _simple_loss(schedule, out, x0, t, noise, prediction) -> jax.Array:
    """L_simple per example: the mean over the data axes of (out - target)^2, [B]."""
    if prediction == "epsilon":
        target = noise
    elif prediction == "x0":
        target = x0
    else:
        target = v_target(schedule, x0, t, noise)
    sq = jnp.square(out.astype(jnp.float32) - target.astype(jnp.float32))
    return jnp.mean(sq.reshape(x0.shape[0], math.prod(x0.shape[1:])), axis=1)  # [B]


# --------------------------------------------------------------------------------------------
# The reverse process: DDPM
# --------------------------------------------------------------------------------------------


def ddpm_step(
    key: jax.Array,
    schedule: Schedule,
    eps: ArrayLike,
    xt: ArrayLike,
    t: ArrayLike,
    variance: Variance = "fixed_small",
    clip_x0: tuple[float, float] | None = None,
) -> jax.Array:
    """One ancestral step x_t -> x_{t-1} of the learned reverse process.

        x0_hat  = predict_x0(x_t, t, eps)          (clipped to `clip_x0` if given)
        mu      = posterior mean of q(x_{t-1} | x_t, x0_hat)
        x_{t-1} = mu + sigma_t z,   z = jax.random.normal(key, x_t.shape, x_t.dtype),

    with sigma_t^2 = tilde-beta_t ("fixed_small") or beta_t ("fixed_large"), and no noise at
    t = 0 (the last step returns the mean). This is diffusers' `DDPMScheduler.step` for
    `prediction_type="epsilon"` (`clip_sample=True` corresponds to `clip_x0=(-1, 1)`).

    Args:
        key: PRNG key for z.
        schedule: the `Schedule`.
        eps: the denoiser's output at (x_t, t), `[B, ...]`.
        xt: `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        variance: "fixed_small" (tilde-beta_t, the lower bound on the reverse variance) or
            "fixed_large" (beta_t, the upper bound); Ho et al. found both give similar samples.
        clip_x0: None, or a (low, high) range that x0_hat is clipped to (the data range).

    Returns:
        x_{t-1}, `[B, ...]`.

    Raises:
        ValueError: mismatched shapes, a concrete `t` outside `0 .. T-1`, an unknown `variance`,
            a `clip_x0` that is not a pair low < high.
        TypeError: `key` None or not a PRNG key, non-integer `t`, complex/string/None arrays.

    References:
        Ho et al. 2020, eq. (11), Algorithm 2 and section 3.2.
    """
    key = _checks.key(key)
    schedule = _check_schedule(schedule)
    variance = _checks.choice(variance, "variance", _VARIANCES)
    clip_x0 = _check_clip(clip_x0)
    xt = _float_array(xt, "xt")
    eps = _float_array(eps, "eps")
    _checks.same_shape(xt, eps, "xt", "eps")
    t = _timestep(t, xt, schedule)
    wide = _checks.compute_dtype(xt, eps)  # half precision: x0_hat may overflow float16 although x_{t-1} does not
    x0 = _clip(predict_x0(schedule, xt.astype(wide), t, eps.astype(wide)), clip_x0)
    mean, _, _ = q_posterior(schedule, x0, xt.astype(wide), t)
    var = schedule.posterior_variance if variance == "fixed_small" else schedule.betas
    sigma = jnp.where(t > 0, _sqrt0(var[t]), 0.0)
    sigma = sigma.reshape(sigma.shape + (1,) * (xt.ndim - sigma.ndim))
    z = jax.random.normal(key, xt.shape, xt.dtype)
    return _finish(mean + sigma * z, xt)


def _check_sample_args(key, eps_fn, schedule, shape, name="shape") -> tuple[int, ...]:
    _checks.key(key)
    _callable(eps_fn, "eps_fn")
    _check_schedule(schedule)
    shape = _checks.shape(shape, name)
    if len(shape) < 1:
        raise ValueError(f"`{name}` must be a non-empty tuple of non-negative ints [B, ...], got {shape!r}")
    return shape


def sample(
    key: jax.Array,
    eps_fn: EpsFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    variance: Variance = "fixed_small",
    *,
    clip_x0: tuple[float, float] | None = None,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Ancestral sampling (DDPM): x_T ~ N(0, I), then `ddpm_step` for t = T-1, ..., 0.

    The whole chain is one `lax.scan` over the T timesteps, inside a `jit` whose static
    arguments are `eps_fn`, `shape`, `variance`, `clip_x0` and `return_trajectory`: calling again
    with the same `eps_fn` object does not recompile. The starting noise comes from
    `jax.random.split(key)[0]`, step t's noise from `fold_in(split(key)[1], t)`.

    Args:
        key: PRNG key.
        eps_fn: the denoiser `(x_t [B, ...], t [B] int32) -> [B, ...]`.
        schedule: the `Schedule`.
        shape: the batch shape `(B, ...)` (static).
        variance: "fixed_small" (tilde-beta_t) or "fixed_large" (beta_t).
        clip_x0: None, or the data range (low, high) that each x0_hat is clipped to.
        return_trajectory: also return every state of the chain.

    Returns:
        x_0 `[B, ...]`; with `return_trajectory`, `(x_0, trajectory)` where trajectory
        `[T + 1, B, ...]` holds the start noise followed by the state after each step:
        `trajectory[T - 1 - t]` is the state at noise level t (before step t is undone, the
        reverse counterpart of `q_sample(schedule, x0, t, noise)`), and `trajectory[T]` is x_0.

    Examples:
        To sample a Flax model for any parameters with a single compilation, jit a function of
        the parameters that builds the denoiser inside::

            @jax.jit
            def generate(params, key):
                return sample(key, lambda x, t: model.apply(params, x, t), schedule, (64, 28, 28, 1))

        >>> sched = make_schedule(linear_beta_schedule(50))
        >>> sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), sched, (3, 2)).shape
        (3, 2)

    References:
        Ho et al. 2020, Algorithm 2.
    """
    shape = _check_sample_args(key, eps_fn, schedule, shape)
    variance = _checks.choice(variance, "variance", _VARIANCES)
    return _sample(key, schedule, eps_fn, shape, variance, _check_clip(clip_x0),
                   _flag(return_trajectory, "return_trajectory"))


@functools.partial(_backend.jit, static_argnums=(2, 3, 4, 5, 6))
def _sample(key, schedule, eps_fn, shape, variance, clip_x0, return_trajectory):
    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape, jnp.float32)
    b = shape[0]

    def body(x, t):
        eps = eps_fn(x, jnp.full((b,), t, jnp.int32))
        x = ddpm_step(jax.random.fold_in(step_key, t), schedule, eps, x, t, variance, clip_x0)
        return x, (x if return_trajectory else None)

    ts = jnp.arange(schedule.num_timesteps - 1, -1, -1, dtype=jnp.int32)
    x_final, xs = jax.lax.scan(body, x, ts)
    if return_trajectory:
        return x_final, jnp.concatenate([x[None], xs], axis=0)
    return x_final


# --------------------------------------------------------------------------------------------
# The reverse process: DDIM
# --------------------------------------------------------------------------------------------


def ddim_timesteps(num_timesteps: int, num_steps: int):
    """The DDIM timesteps with "leading" spacing, in sampling (descending) order.

        ratio = T // num_steps,   timesteps = [(num_steps - 1) ratio, ..., 2 ratio, ratio, 0]

    As diffusers' `DDIMScheduler.set_timesteps` (`timestep_spacing="leading"`, `steps_offset=0`).
    Each step goes from `timesteps[i]` to `timesteps[i + 1]`, and the last from 0 to "-1", the
    end of the chain, where the cumulative alpha is 1.

    Args:
        num_timesteps: T, the training schedule's length.
        num_steps: the number of sampling steps, in 1 .. T.

    Returns:
        int32 NumPy array `[num_steps]`, descending.

    Examples:
        >>> ddim_timesteps(1000, 4).tolist()
        [750, 500, 250, 0]

    References:
        Song et al. 2021, section 4.2 and appendix D.2 (a "linear" sub-sequence of the steps).
    """
    import numpy as np

    T = _num_timesteps(num_timesteps)
    n = _num_timesteps(num_steps, "num_steps")
    if n > T:
        raise ValueError(f"`num_steps` must be at most num_timesteps = {T}, got {n}")
    ratio = T // n
    return (np.arange(n, dtype=np.int32) * ratio)[::-1].copy()


def ddim_step(
    schedule: Schedule,
    eps: ArrayLike,
    xt: ArrayLike,
    t: ArrayLike,
    t_prev: ArrayLike,
    eta: float | ArrayLike = 0.0,
    key: jax.Array | None = None,
    *,
    clip_x0: tuple[float, float] | None = None,
    use_clipped_model_output: bool = False,
) -> jax.Array:
    """One DDIM step from timestep t to an earlier timestep t_prev (any t_prev < t).

        x0_hat   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)        (clipped to `clip_x0` if given)
        sigma    = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)
        x_prev   = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z

    with abar_prev = abar_{t_prev}, or 1 for a negative `t_prev` (the end of the chain), and
    z = jax.random.normal(key, x_t.shape, x_t.dtype). eta = 0 is the deterministic DDIM; eta = 1
    with t_prev = t - 1 is the DDPM step with the "fixed_small" variance. This is diffusers'
    `DDIMScheduler.step` with `set_alpha_to_one=True`. With `use_clipped_model_output` (as in
    diffusers, and as guided-diffusion's DDIM always does) the noise in the direction term is
    recomputed from the clipped x0_hat, eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t), so
    that the step stays consistent with the prediction it keeps.

    Args:
        schedule: the `Schedule`.
        eps: the denoiser's output at (x_t, t), `[B, ...]`.
        xt: `[B, ...]`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (see the module's conventions for traced values).
        t_prev: int, `[]` or `[B]`, in `-1 .. t-1`; -1 for the last step (the end of the chain).
        eta: the noise scale, a finite number >= 0 (0: deterministic DDIM; 1: the DDPM
            variance); may be a traced array, which is clipped at 0. Above 1, sigma can exceed
            sqrt(1 - abar_prev) and the direction term's coefficient is then 0 (not NaN).
        key: PRNG key for z; needed unless `eta` is the Python number 0. The listed exception to
            "key first": it comes last because the deterministic sampler needs none.
        clip_x0: None, or a (low, high) range that x0_hat is clipped to.
        use_clipped_model_output: recompute eps from the clipped x0_hat (no effect without
            `clip_x0`).

    Returns:
        x_{t_prev}, `[B, ...]`.

    Raises:
        ValueError: mismatched shapes; a concrete `t` outside `0 .. T-1` or `t_prev` outside
            `-1 .. t-1` (traced ones are clipped there); a negative, infinite or NaN `eta`; a bad
            `clip_x0`.
        TypeError: `key=None` with a concrete `eta > 0` or a traced `eta`; a `key` that is not a
            PRNG key; non-integer timesteps; a string or bool `eta`; complex/string/None arrays.

    References:
        Song et al. 2021, eqs. (12) and (16).
    """
    schedule = _check_schedule(schedule)
    clip_x0 = _check_clip(clip_x0)
    xt = _float_array(xt, "xt")
    eps = _float_array(eps, "eps")
    _checks.same_shape(xt, eps, "xt", "eps")
    use_clipped_model_output = _flag(use_clipped_model_output, "use_clipped_model_output")
    t_given, t_prev_given = t, t_prev
    t = _timestep(t, xt, schedule)
    t_prev = _timestep(t_prev, xt, schedule, "t_prev", low=-1)
    if _checks.is_concrete(t_given) and _checks.is_concrete(t_prev_given):
        with jax.ensure_compile_time_eval():  # concrete values closed over by a jit trace stay concrete
            given, prev = jnp.asarray(t_given), jnp.asarray(t_prev_given)
            if bool(jnp.any(prev >= given)):
                raise ValueError(f"`t_prev` must be earlier than `t` (t_prev < t; -1 ends the chain), got "
                                 f"t={given.tolist()} and t_prev={prev.tolist()}")
    t_prev = jnp.minimum(t_prev, t - 1)  # traced: clipped into -1 .. t-1 (a no-op once checked)
    eta = _checks.number(eta, "eta", 0.0)
    deterministic = isinstance(eta, float) and eta == 0.0
    if not deterministic:
        if key is None:
            raise TypeError("`key` must be a PRNG key such as jax.random.key(0) when `eta` > 0 (or traced), "
                            f"got None (eta={eta!r}); only eta = 0 samples deterministically without a key")
        key = _checks.key(key)
    abar_t = _coef(schedule.alphas_cumprod, t, xt)
    abar_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)
    abar_prev = abar_prev.reshape(abar_prev.shape + (1,) * (xt.ndim - abar_prev.ndim))
    x0 = _clip((xt - _sqrt0(1.0 - abar_t) * eps) / jnp.sqrt(abar_t), clip_x0)
    if use_clipped_model_output and clip_x0 is not None:
        eps = (xt - jnp.sqrt(abar_t) * x0) / _sqrt0(1.0 - abar_t)
    out = jnp.sqrt(abar_prev) * x0
    if deterministic:
        out = out + _sqrt0(1.0 - abar_prev) * eps
    else:
        var = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
        sigma = jnp.maximum(jnp.asarray(eta, jnp.float32), 0.0) * _sqrt0(var)
        direction = _sqrt0(1.0 - abar_prev - sigma**2) * eps
        out = out + direction + sigma * jax.random.normal(key, xt.shape, xt.dtype)
    return _finish(out, xt)


def ddim_sample(
    key: jax.Array,
    eps_fn: EpsFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int,
    eta: float = 0.0,
    *,
    clip_x0: tuple[float, float] | None = None,
    use_clipped_model_output: bool = False,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """DDIM sampling in `num_steps` steps: x_T ~ N(0, I), then `ddim_step` along
    `ddim_timesteps(T, num_steps)`, the last step ending the chain (t_prev = -1).

    One `lax.scan` inside a `jit` with static `eps_fn`, `shape`, `num_steps`, `clip_x0`,
    `use_clipped_model_output` and `return_trajectory` (`eta` is traced: changing it does not
    recompile). The start noise comes from `jax.random.split(key)[0]`; with eta > 0, step i's
    noise from `fold_in(split(key)[1], i)`. With eta = 0 the map from the start noise to the
    sample is deterministic.

    Args:
        key: PRNG key.
        eps_fn: the denoiser `(x_t [B, ...], t [B] int32) -> [B, ...]`.
        schedule: the `Schedule`.
        shape: the batch shape `(B, ...)` (static).
        num_steps: sampling steps, 1 .. T (static Python int).
        eta: the noise scale, a finite number >= 0 (0: deterministic DDIM; 1: DDPM-like); a
            traced value is clipped at 0.
        clip_x0: None, or the data range (low, high) that each x0_hat is clipped to.
        use_clipped_model_output: see `ddim_step`.
        return_trajectory: also return every state of the chain.

    Returns:
        x_0 `[B, ...]`; with `return_trajectory`, `(x_0, trajectory)` with trajectory
        `[num_steps + 1, B, ...]`: the start noise, then the state after each step.

    Examples:
        >>> sched = make_schedule(linear_beta_schedule(100))
        >>> ddim_sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), sched, (3, 2), 10).shape
        (3, 2)

    References:
        Song et al. 2021, eq. (12) and section 4.2.
    """
    shape = _check_sample_args(key, eps_fn, schedule, shape)
    ddim_timesteps(schedule.num_timesteps, num_steps)  # checks num_steps
    eta = _checks.number(eta, "eta", 0.0)
    return _ddim_sample(key, schedule, jnp.asarray(eta, jnp.float32), eps_fn, shape, int(num_steps),
                        _check_clip(clip_x0), _flag(use_clipped_model_output, "use_clipped_model_output"),
                        _flag(return_trajectory, "return_trajectory"))


@functools.partial(_backend.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _ddim_sample(key, schedule, eta, eps_fn, shape, num_steps, clip_x0, use_clipped, return_trajectory):
    import numpy as np

    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape, jnp.float32)
    b = shape[0]
    ts = ddim_timesteps(schedule.num_timesteps, num_steps)
    t_prevs = np.concatenate([ts[1:], np.array([-1], np.int32)])
    steps = (jnp.asarray(ts), jnp.asarray(t_prevs), jnp.arange(num_steps, dtype=jnp.int32))

    def body(x, step):
        t, t_prev, i = step
        eps = eps_fn(x, jnp.full((b,), t, jnp.int32))
        x = ddim_step(schedule, eps, x, t, t_prev, eta, jax.random.fold_in(step_key, i), clip_x0=clip_x0,
                      use_clipped_model_output=use_clipped)
        return x, (x if return_trajectory else None)

    x_final, xs = jax.lax.scan(body, x, steps)
    if return_trajectory:
        return x_final, jnp.concatenate([x[None], xs], axis=0)
    return x_final



# --------------------------------------------------------------------------------------------
# Fast samplers, zero-terminal-SNR schedules and min-SNR weighting (issue 18) are written in
# genjax._samplers (which imports the functions above) and public here as this module's own:
# importing it adds rescale_zero_terminal_snr, zero_terminal_snr_schedule, karras_sigmas,
# spaced_timesteps, dpmpp_2m_sample, euler_sample, heun_sample, ddim_spaced_sample, sample_with,
# min_snr_weight and min_snr_loss to this namespace and to __all__ (whichever is imported first).
# --------------------------------------------------------------------------------------------

from genjax import _samplers  # noqa: E402,F401  (it imports genjax._learned_variance in turn)
