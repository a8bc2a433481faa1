"""Fast diffusion samplers, zero-terminal-SNR schedules and min-SNR loss weighting (issue 18).

Private module: its public functions are re-exported by `genjax.diffusion`, which states the
conventions (0-based timesteps, `Schedule`, keys, static numbers). What is new here:

- **Parameterisations.** Every sampler takes the model's `prediction`: "epsilon" (the noise),
  "x0" (the data) or "v" (Salimans & Ho 2022, v = sqrt(abar) eps - sqrt(1 - abar) x0). The model
  is `model_fn(x_t, t) -> prediction` with `x_t` `[B, ...]` in the variance-preserving scaling
  of `q_sample` (as `sample`/`ddim_sample`), and `t` an int32 array `[B]` (Euler/Heun with
  `fractional_timesteps=True`: float32 `[B]`, as diffusers' Karras samplers give their UNets).
- **Samplers.** One `lax.scan` each, jitted with the model as a static argument, any number of
  steps. The start noise is `jax.random.normal(jax.random.split(key)[0], shape)` (in the VP
  scaling; the Euler/Heun state is that noise times sqrt(1 + sigma_max^2)); a stochastic step i
  draws `jax.random.normal(fold_in(split(key)[1], i), shape)`.
  `dpmpp_2m_sample` (DPM-Solver++(2M), Lu et al. 2022, and with `sde=True` its SDE variant),
  `euler_sample` and `heun_sample` (Karras et al. 2022, on the Karras sigma ladder), and
  `ddim_spaced_sample` (DDIM with "leading", "linspace" or "trailing" timestep spacing,
  Lin et al. 2024, Table 2). `sample_with` dispatches to any of them by name.
- **Parity with diffusers 0.42.1**: `DPMSolverMultistepScheduler` (`algorithm_type`
  "dpmsolver++"/"sde-dpmsolver++", `solver_order=2`, midpoint, `final_sigmas_type="zero"`),
  `EulerDiscreteScheduler`/`HeunDiscreteScheduler` (`use_karras_sigmas=True`,
  `timestep_spacing="linspace"`), `DDIMScheduler` (each `timestep_spacing`, `set_alpha_to_one`)
  and `rescale_betas_zero_snr`; tests/test_diffusion_samplers.py checks the ladders and steps.
- **Where diffusers is wrong, genjax is right** (each with a test):
  DDIM's previous timestep is the next entry of the ladder (diffusers: `t - T // num_steps`,
  wrong under "linspace"/"trailing", diffusers issues #9261, #11347, #12633); with a zero
  terminal SNR and epsilon prediction x0 = (x - eps) / 0 is infinite at the first step: genjax's
  DDIM floors abar at 2**-24 there, as diffusers' DPM/Euler schedulers do, and stays finite
  (diffusers' DDIM returns inf/NaN, issue #3851); the min-SNR weight for v-prediction is
  min(SNR, gamma) / (SNR + 1) (issue #5654, PR #6307, issue #9451), and the epsilon weight at SNR
  = 0 is its limit 1, not 0/0; the Karras ladder always ends with the step sigma_min -> 0 (Karras
  et al. eq. 5, sigma_N = 0), never with the zero-length step sigma_min -> sigma_min that
  diffusers' `final_sigmas_type="sigma_min"` with Karras sigmas still takes (the dummy step of
  PR #6477).

References:
    C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu, "DPM-Solver++: Fast Solver for Guided Sampling
    of Diffusion Probabilistic Models" (arXiv:2211.01095), Algorithm 2 (2M) and appendix (SDE).
    T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the Design Space of Diffusion-Based
    Generative Models", NeurIPS 2022 (arXiv:2206.00364): eq. (5) the sigma ladder, Algorithm 1.
    S. Lin, B. Liu, J. Li, X. Yang, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    WACV 2024 (arXiv:2305.08891): Algorithm 1 (zero terminal SNR), Table 2 (spacings).
    T. Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023
    (arXiv:2303.09556), eq. (9) and appendix B (the weight for each parameterisation).
    diffusers 0.42.1, `scheduling_dpmsolver_multistep.py`, `scheduling_euler_discrete.py`,
    `scheduling_heun_discrete.py`, `scheduling_ddim.py`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from genjax import _backend, _checks
from genjax.diffusion import (
    _PREDICTIONS,
    Schedule,
    _callable,
    _check_clip,
    _check_sample_args,
    _clip,
    _check_schedule,
    _flag,
    _float_array,
    _static_number,
    _timestep,
    ddpm_loss,
    sample,
    to_eps_fn,
)

__all__: list[str] = []  # private: genjax.diffusion re-exports the public functions

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
SPACINGS = ("leading", "linspace", "trailing")
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun")
ABAR_FLOOR = 2.0**-24  # the smallest abar used where abar = 0 would make x0 or sigma infinite (as diffusers)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def _betas64(betas: Any, name: str = "betas"):
    import numpy as np

    if betas is None or isinstance(betas, (str, bytes)):
        raise TypeError(f"`{name}` must be an array of real numbers, got {betas!r}")
    try:
        raw = np.asarray(betas)
        if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise TypeError(f"dtype {raw.dtype} is not real")
        b = raw.astype(np.float64)
    except jax.errors.TracerArrayConversionError:
        raise TypeError(f"`{name}` must be concrete (schedules are built on the host): call it outside jit") from None
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be an array of real numbers, got {type(betas).__name__}: {err}") from err
    if b.ndim != 1 or b.shape[0] < 2:
        raise ValueError(f"`{name}` must be a 1-D array [T] with T >= 2, got shape {b.shape}")
    if not np.all((b > 0.0) & (b < 1.0)):
        bad = b[~((b > 0.0) & (b < 1.0))]
        raise ValueError(f"every entry of `{name}` must lie in (0, 1); got {bad.size} outside, e.g. {bad[0]!r}")
    return b


def rescale_zero_terminal_snr(betas: Any):
    """Rescales a beta schedule to a zero terminal SNR (Lin et al. 2024, Algorithm 1).

        s_t = sqrt(abar_t),   s_t <- (s_t - s_{T-1}) s_0 / (s_0 - s_{T-1}),   abar_t = s_t^2,
        beta_t = 1 - abar_t / abar_{t-1}

    so that abar_0 is unchanged and abar_{T-1} = 0 exactly (the last beta is 1): the last
    timestep is pure noise, as at sampling time. The same betas as diffusers'
    `rescale_zero_terminal_snr` (`rescale_betas_zero_snr=True`), here in float64.

    Args:
        betas: `[T]` betas in (0, 1), T >= 2 (e.g. `linear_beta_schedule(1000)`).

    Returns:
        float64 NumPy array `[T]` whose last entry is 1; build its schedule with
        `zero_terminal_snr_schedule` (`make_schedule` rejects a beta of 1).

    Raises:
        ValueError: not a 1-D array of T >= 2 numbers in (0, 1).
        TypeError: traced, complex, string or None betas.

    Examples:
        >>> from genjax.diffusion import linear_beta_schedule
        >>> b = rescale_zero_terminal_snr(linear_beta_schedule(1000))
        >>> float(b[-1]), round(float(b[0]), 6)
        (1.0, 0.0001)

    References:
        Lin et al. 2024, section 3.1 and Algorithm 1.
    """
    import numpy as np

    b = _betas64(betas)
    s = np.sqrt(np.cumprod(1.0 - b))
    s0, s_last = s[0], s[-1]
    s = (s - s_last) * s0 / (s0 - s_last)
    abar = s**2
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


def zero_terminal_snr_schedule(betas: Any) -> Schedule:
    """The `Schedule` of `rescale_zero_terminal_snr(betas)`: abar_{T-1} = 0 exactly.

    Every field is `make_schedule`'s formula in float64, except that at the last timestep
    `sqrt_recip_alphas_cumprod` and `sqrt_recipm1_alphas_cumprod` are +inf (x0 cannot be
    recovered from a noise prediction at zero SNR). The samplers of this module handle it
    (see each); `sample`, `ddim_sample` and `predict_x0` return inf/NaN there with a noise
    predictor, which is the truth: train such a schedule with `prediction="v"` (Lin et al.).

    Args:
        betas: `[T]` betas in (0, 1), T >= 2, before rescaling.

    Returns:
        The `Schedule` (float32 arrays).

    Raises:
        ValueError, TypeError: as `rescale_zero_terminal_snr`.

    Examples:
        >>> from genjax.diffusion import linear_beta_schedule
        >>> float(zero_terminal_snr_schedule(linear_beta_schedule(100)).alphas_cumprod[-1])
        0.0

    References:
        Lin et al. 2024, Algorithm 1.
    """
    import numpy as np

    b = rescale_zero_terminal_snr(betas)
    with np.errstate(all="ignore"):
        alphas = 1.0 - b
        abar = np.cumprod(alphas)
        abar[-1] = 0.0
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        post_var = b * (1.0 - abar_prev) / (1.0 - abar)
        arrays = dict(
            betas=b, alphas=alphas, alphas_cumprod=abar, alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=np.sqrt(abar), sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - abar),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / abar), sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / abar - 1.0),
            posterior_variance=post_var,
            posterior_log_variance_clipped=np.log(np.concatenate([[post_var[1]], post_var[1:]])),
            posterior_mean_coef1=np.sqrt(abar_prev) * b / (1.0 - abar),
            posterior_mean_coef2=np.sqrt(alphas) * (1.0 - abar_prev) / (1.0 - abar),
        )
    assert set(arrays) == set(Schedule.__dataclass_fields__)
    return Schedule(**{k: jnp.asarray(v.astype(np.float32)) for k, v in arrays.items()})


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0):
    """The Karras et al. (2022) noise levels, eq. (5), ending with 0.

        sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
        i = 0 .. N-1,   sigma_N = 0

    (N = 1: the single level sigma_max, then 0.) The first N entries are diffusers'
    `_convert_to_karras`; the final step always goes from sigma_min to 0.

    Args:
        num_steps: N >= 1, the number of steps (N + 1 levels).
        sigma_min: the smallest positive level, > 0 (for a DDPM schedule: sqrt((1 - abar_0) / abar_0)).
        sigma_max: the largest, >= sigma_min.
        rho: the warp, > 0 (7 in the paper; larger spends more steps at low noise).

    Returns:
        float64 NumPy array `[N + 1]`, descending, the last entry 0.

    Raises:
        ValueError: a non-positive `sigma_min`/`rho`, `sigma_max < sigma_min`, infinite/NaN values,
            `num_steps < 1`.
        TypeError: a non-int `num_steps`; strings, bools or None.

    Examples:
        >>> [round(float(s), 3) for s in karras_sigmas(3, 0.002, 80.0)]
        [80.0, 2.515, 0.002, 0.0]

    References:
        Karras et al. 2022, eq. (5) and Table 1 (rho = 7).
    """
    import numpy as np

    n = _checks.positive_int(num_steps, "num_steps")
    lo = _static_number(sigma_min, "sigma_min", 0.0, low_open=True)
    hi = _static_number(sigma_max, "sigma_max", 0.0, low_open=True)
    rho = _static_number(rho, "rho", 0.0, low_open=True)
    if hi < lo:
        raise ValueError(f"`sigma_max` must be at least `sigma_min`, got sigma_max={sigma_max!r} < "
                         f"sigma_min={sigma_min!r}")
    ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    s = (hi ** (1.0 / rho) + ramp * (lo ** (1.0 / rho) - hi ** (1.0 / rho))) ** rho
    return np.concatenate([s, [0.0]])


# --------------------------------------------------------------------------------------------
# Ladders (host side, static): timesteps for a number of steps
# --------------------------------------------------------------------------------------------


def spaced_timesteps(num_timesteps: int, num_steps: int, spacing: str = "leading", steps_offset: int = 0):
    """The DDIM timesteps for `num_steps` steps with a timestep spacing, in sampling order.

        leading:   (num_steps - 1 - i) (T // num_steps) + steps_offset
        linspace:  round(linspace(0, T - 1, num_steps))[::-1]   (starts at T-1, ends at 0)
        trailing:  round(arange(T, 0, -T / num_steps)) - 1       (starts at T-1)

    As diffusers' `DDIMScheduler.set_timesteps`. Lin et al. (2024, Table 2) show that only
    "linspace" and "trailing" start at the last timestep (T-1), where the training noise is
    closest to the pure noise that sampling starts from. Each step of `ddim_spaced_sample` goes
    to the next entry of the ladder and the last one to the end of the chain.

    Args:
        num_timesteps: T.
        num_steps: 1 .. T.
        spacing: "leading", "linspace" or "trailing".
        steps_offset: added to "leading" timesteps (Stable Diffusion uses 1); 0 .. T - 1 -
            (num_steps - 1) (T // num_steps); must be 0 for the other spacings.

    Returns:
        int32 NumPy array `[num_steps]`, strictly descending, in `0 .. T-1`.

    Raises:
        ValueError: `num_steps` outside 1 .. T, an unknown `spacing`, a bad `steps_offset`.
        TypeError: non-int counts.

    Examples:
        >>> spaced_timesteps(1000, 3, "trailing").tolist()
        [999, 666, 332]
        >>> spaced_timesteps(1000, 4, "linspace").tolist()
        [999, 666, 333, 0]

    References:
        Lin et al. 2024, section 3.3 and Table 2.
    """
    import numpy as np

    T = _checks.positive_int(num_timesteps, "num_timesteps")
    n = _checks.positive_int(num_steps, "num_steps")
    if n > T:
        raise ValueError(f"`num_steps` must be at most num_timesteps = {T}, got {n}")
    spacing = _checks.choice(spacing, "spacing", SPACINGS)
    offset = _checks.integer(steps_offset, "steps_offset", 0, T - 1)
    if spacing == "leading":
        ts = (np.arange(n) * (T // n))[::-1] + offset
        if ts[0] > T - 1:
            raise ValueError(f"`steps_offset`={offset} puts the first timestep at {ts[0]} > T - 1 = {T - 1}")
    else:
        if offset != 0:
            raise ValueError(f"`steps_offset` applies to the 'leading' spacing only, got {offset} with {spacing!r}")
        if spacing == "linspace":
            ts = np.linspace(0, T - 1, n).round()[::-1]
        else:
            ts = np.arange(T, 0, -T / n).round() - 1
    return ts.astype(np.int32).copy()


def _dpm_timesteps(T: int, n: int, spacing: str):
    """DPMSolverMultistepScheduler.set_timesteps (lambda_min_clipped = -inf)."""
    import numpy as np

    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ts = (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1]
    else:
        ts = np.arange(T, 0, -T / n).round() - 1
    return ts.astype(np.int32).copy()


def _sigma_to_t(sigma: jax.Array, log_sigmas: jax.Array) -> jax.Array:
    """diffusers' `_sigma_to_t`: the fractional timestep of sigma, linear in log sigma."""
    T = log_sigmas.shape[0]
    log_sigma = jnp.log(jnp.maximum(sigma, 1e-10))
    count = jnp.sum(log_sigmas[:, None] <= log_sigma[None, :], axis=0)
    low = jnp.clip(count - 1, 0, T - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = jnp.clip((lo - log_sigma) / (lo - hi), 0.0, 1.0)
    return (1.0 - w) * low + w * (low + 1)


def _train_sigmas(schedule: Schedule) -> jax.Array:
    abar = jnp.maximum(schedule.alphas_cumprod, ABAR_FLOOR)
    return jnp.sqrt((1.0 - abar) / abar)


def _karras_ladder(schedule: Schedule, num_steps: int, rho: float, fractional: bool):
    """(timesteps [N] int32 or float32, sigmas [N + 1] ending with 0) of Euler/Heun."""
    sig = _train_sigmas(schedule)
    lo, hi = sig[0], sig[-1]
    ramp = jnp.linspace(0.0, 1.0, num_steps) if num_steps > 1 else jnp.zeros(1)
    s = (hi ** (1.0 / rho) + ramp * (lo ** (1.0 / rho) - hi ** (1.0 / rho))) ** rho
    t = _sigma_to_t(s, jnp.log(sig))
    if not fractional:
        t = jnp.round(t).astype(jnp.int32)
        s = sig[t]  # snapped: the step uses the noise level the model is told
    return t, jnp.concatenate([s, jnp.zeros(1, s.dtype)])


# --------------------------------------------------------------------------------------------
# The model's output as x0 (and eps)
# --------------------------------------------------------------------------------------------


def _call(model_fn, x, t, name="model_fn"):
    out = model_fn(x, jnp.broadcast_to(t, (x.shape[0],)))
    out = _float_array(out, f"{name}(x_t, t)")
    _checks.same_shape(x, out, "x_t", f"{name}(x_t, t)")
    return out.astype(jnp.float32)


def _x0_vp(out, x, alpha, sv, prediction):
    """x0_hat from a VP state x = alpha x0 + sv eps (alpha > 0 for epsilon)."""
    if prediction == "epsilon":
        return (x - sv * out) / alpha
    if prediction == "x0":
        return out
    return alpha * x - sv * out


def _x0_ve(out, x, sigma, prediction):
    """x0_hat from a VE state x = x0 + sigma eps (the model saw x / sqrt(1 + sigma^2))."""
    if prediction == "epsilon":
        return x - sigma * out
    if prediction == "x0":
        return out
    return out * (-sigma / jnp.sqrt(sigma**2 + 1.0)) + x / (sigma**2 + 1.0)


def _check_common(key, model_fn, schedule, shape, num_steps, prediction, max_steps=True):
    _checks.key(key)
    _callable(model_fn, "model_fn")
    shape = _check_sample_args(key, model_fn, schedule, shape)
    n = _checks.positive_int(num_steps, "num_steps")
    if max_steps and n > schedule.num_timesteps:
        raise ValueError(f"`num_steps` must be at most num_timesteps = {schedule.num_timesteps}, got {n}")
    return shape, n, _checks.choice(prediction, "prediction", _PREDICTIONS)


def _finish(x_final, x_start, xs, return_trajectory):
    if return_trajectory:
        return x_final, jnp.concatenate([x_start[None], xs], axis=0)
    return x_final


# --------------------------------------------------------------------------------------------
# DPM-Solver++(2M) and its SDE variant
# --------------------------------------------------------------------------------------------


def dpmpp_2m_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int,
    prediction: str = "epsilon",
    *,
    sde: bool = False,
    spacing: str = "linspace",
    clip_x0: tuple[float, float] | None = None,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """DPM-Solver++(2M) (Lu et al. 2022) in `num_steps` model evaluations; `sde=True`: SDE-DPM-Solver++(2M).

    With lambda = log(alpha / sigma) (alpha = sqrt(abar), sigma = sqrt(1 - abar)), h = lambda_next
    - lambda_i, x0_i the model's data prediction at step i and r = h_{i-1} / h:

        ODE:  x_next = sigma_next / sigma_i x + alpha_next (1 - e^-h) (x0_i + (x0_i - x0_{i-1}) / (2 r))
        SDE:  x_next = sigma_next / sigma_i e^-h x + alpha_next (1 - e^-2h) (x0_i + (x0_i - x0_{i-1}) / (2 r))
                       + sigma_next sqrt(1 - e^-2h) z

    The first step and the last (to sigma = 0, where x_next = x0_i) are first order (drop the
    difference term), as diffusers' `DPMSolverMultistepScheduler` with `solver_order=2`,
    `solver_type="midpoint"`, `lower_order_final=True`, `final_sigmas_type="zero"` and
    `algorithm_type="dpmsolver++"` or `"sde-dpmsolver++"`; the timesteps are its
    `timestep_spacing` ("linspace", the default there too: `num_steps + 1` points from T-1 to 0,
    the last dropped). With a zero-terminal-SNR schedule abar is floored at 2**-24 (as diffusers).

    Args:
        key: PRNG key (the start noise; with `sde` also the noise of each step).
        model_fn: `(x_t [B, ...], t [B] int32) -> prediction [B, ...]`.
        schedule: the `Schedule`.
        shape: `(B, ...)` (static).
        num_steps: model evaluations, 1 .. T (static).
        prediction: "epsilon", "x0" or "v".
        sde: the stochastic variant.
        spacing: "linspace", "leading" or "trailing" (diffusers' DPM ladders).
        clip_x0: `(low, high)`: each data prediction x0_i is clipped to it before it enters the
            update (the static thresholding of Lu et al. for bounded data such as images in
            [-1, 1]; diffusers' DPMSolverMultistepScheduler thresholds dynamically instead); None
            (the default) leaves it as is.
        return_trajectory: also return the start noise and every state, `[num_steps + 1, B, ...]`.

    Returns:
        x_0 `[B, ...]` (float32), or `(x_0, trajectory)`.

    Raises:
        ValueError: `num_steps` outside 1 .. T, unknown `prediction`/`spacing`, an empty `shape`,
            a model output of another shape, `clip_x0` not None or a pair low < high.
        TypeError: a bad key, model, schedule, shape or flag.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> dpmpp_2m_sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, (2, 3), 5).shape
        (2, 3)

    References:
        Lu et al. 2022 (arXiv:2211.01095), Algorithm 2 and appendix (SDE-DPM-Solver++(2M)).
    """
    shape, n, prediction = _check_common(key, model_fn, schedule, shape, num_steps, prediction)
    spacing = _checks.choice(spacing, "spacing", SPACINGS)
    return _dpmpp(key, schedule, model_fn, shape, n, prediction, _flag(sde, "sde"), spacing,
                  _check_clip(clip_x0), _flag(return_trajectory, "return_trajectory"))


def _dpm_coefficients(schedule: Schedule, ts, sde: bool):
    """Per step i: (c_x, c_d, c_1, c_z) with x_next = c_x x + c_d x0_i + c_1 (x0_i - x0_{i-1}) + c_z z."""
    n = ts.shape[0]
    sig = _train_sigmas(schedule)[ts]  # [n], sigma_i of the VE scaling
    alpha = 1.0 / jnp.sqrt(1.0 + sig**2)
    sv = sig * alpha
    lam = jnp.log(alpha) - jnp.log(sv)
    last = jnp.arange(n) == n - 1
    nxt = jnp.minimum(jnp.arange(n) + 1, n - 1)
    a_next = jnp.where(last, 1.0, alpha[nxt])
    sv_next = jnp.where(last, 0.0, sv[nxt])
    h = jnp.where(last, 1.0, lam[nxt] - lam)
    h_prev = jnp.concatenate([jnp.ones(1), h[:-1]])
    r = h_prev / h
    if sde:
        c_x = sv_next / sv * jnp.exp(-h)
        c_d = -a_next * jnp.expm1(-2.0 * h)
        c_z = sv_next * jnp.sqrt(-jnp.expm1(-2.0 * h))
    else:
        c_x = sv_next / sv
        c_d = -a_next * jnp.expm1(-h)
        c_z = jnp.zeros_like(h)
    first = (jnp.arange(n) == 0) | last
    c_1 = jnp.where(first, 0.0, 0.5 * c_d / r)
    c_x, c_d, c_z = jnp.where(last, 0.0, c_x), jnp.where(last, 1.0, c_d), jnp.where(last, 0.0, c_z)
    return (alpha, sv), (c_x, c_d, c_1, c_z)


@functools.partial(_backend.jit, static_argnums=(2, 3, 4, 5, 6, 7, 8, 9))
def _dpmpp(key, schedule, model_fn, shape, n, prediction, sde, spacing, clip_x0, return_trajectory):
    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape, jnp.float32)
    ts = _dpm_timesteps(schedule.num_timesteps, n, spacing)
    (alpha, sv), coefs = _dpm_coefficients(schedule, jnp.asarray(ts), sde)
    steps = (jnp.asarray(ts), alpha, sv, *coefs, jnp.arange(n, dtype=jnp.int32))

    def body(carry, step):
        x, x0_prev = carry
        t, a, s, c_x, c_d, c_1, c_z, i = step
        x0 = _clip(_x0_vp(_call(model_fn, x, t), x, a, s, prediction), clip_x0)
        x_new = c_x * x + c_d * x0 + c_1 * (x0 - x0_prev)
        if sde:
            x_new = x_new + c_z * jax.random.normal(jax.random.fold_in(step_key, i), shape, jnp.float32)
        return (x_new, x0), (x_new if return_trajectory else None)

    (x_final, _), xs = jax.lax.scan(body, (x, jnp.zeros_like(x)), steps)
    return _finish(x_final, x, xs, return_trajectory)


# --------------------------------------------------------------------------------------------
# Euler and Heun on the Karras ladder
# --------------------------------------------------------------------------------------------


def euler_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int,
    prediction: str = "epsilon",
    *,
    rho: float = 7.0,
    fractional_timesteps: bool = False,
    clip_x0: tuple[float, float] | None = None,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Euler's method on the probability-flow ODE over the Karras sigma ladder (N evaluations).

    In the variance-exploding scaling x = x_t / sqrt(abar_t) (noise level sigma = sqrt((1 -
    abar) / abar)), with D the model's data prediction at (x / sqrt(1 + sigma^2), t(sigma)):

        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D_i) / sigma_i,

    over `karras_sigmas(N, sigma(t=0), sigma(t=T-1), rho)` (the last step, to 0, returns D).
    t(sigma) is diffusers' `_sigma_to_t` (linear in log sigma between training timesteps). By
    default the model is given int32 timesteps `round(t(sigma))` and each level is snapped to
    that timestep's sigma, so the step uses the noise level the model is told; with
    `fractional_timesteps=True` it is given the float32 t(sigma) and the exact Karras levels,
    as diffusers' `EulerDiscreteScheduler(use_karras_sigmas=True, timestep_spacing="linspace")`.
    The start is the VP noise times sqrt(1 + sigma_max^2) (diffusers' `init_noise_sigma`).

    Args:
        key: PRNG key (the start noise).
        model_fn: `(x_t [B, ...], t [B]) -> prediction [B, ...]`, x_t in the VP scaling.
        schedule: the `Schedule` (zero terminal SNR: abar floored at 2**-24, as diffusers).
        shape: `(B, ...)` (static).
        num_steps: model evaluations N >= 1 (static).
        prediction: "epsilon", "x0" or "v".
        rho: the Karras warp, > 0.
        fractional_timesteps: give the model float32 timesteps (see above).
        clip_x0: `(low, high)`: each data prediction D_i is clipped to it before it enters the
            step (static thresholding, as `dpmpp_2m_sample`); None: unclipped.
        return_trajectory: also return the start and every state, in the VP scaling
            (x / sqrt(1 + sigma^2)), `[N + 1, B, ...]`.

    Returns:
        x_0 `[B, ...]` (float32), or `(x_0, trajectory)`.

    Raises:
        ValueError, TypeError: as `dpmpp_2m_sample`; a non-positive `rho`.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> euler_sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, (2, 3), 5).shape
        (2, 3)

    References:
        Karras et al. 2022, eq. (5), Algorithm 1 without the second-order correction.
    """
    shape, n, prediction = _check_common(key, model_fn, schedule, shape, num_steps, prediction, max_steps=False)
    rho = _static_number(rho, "rho", 0.0, low_open=True)
    return _karras(key, schedule, model_fn, shape, n, prediction, rho, _flag(fractional_timesteps,
                   "fractional_timesteps"), False, _check_clip(clip_x0), _flag(return_trajectory, "return_trajectory"))


def heun_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int,
    prediction: str = "epsilon",
    *,
    rho: float = 7.0,
    fractional_timesteps: bool = False,
    clip_x0: tuple[float, float] | None = None,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1) over the Karras ladder.

        d_i = (x_i - D(x_i, sigma_i)) / sigma_i,   x' = x_i + (sigma_{i+1} - sigma_i) d_i,
        x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d_i + (x' - D(x', sigma_{i+1})) / sigma_{i+1}) / 2,

    and the last step (to sigma = 0) is Euler's: `num_steps` steps take 2 num_steps - 1 model
    evaluations, as diffusers' `HeunDiscreteScheduler(use_karras_sigmas=True,
    timestep_spacing="linspace")`. The scan runs the N - 1 Heun steps; the final Euler step
    follows it. Scalings, timesteps and arguments as `euler_sample`.

    Args:
        key: PRNG key (the start noise).
        model_fn: `(x_t [B, ...], t [B]) -> prediction [B, ...]`.
        schedule: the `Schedule`.
        shape: `(B, ...)` (static).
        num_steps: steps N >= 1 (2N - 1 model evaluations; static).
        prediction: "epsilon", "x0" or "v".
        rho: the Karras warp, > 0.
        fractional_timesteps: give the model float32 timesteps (see `euler_sample`).
        clip_x0: `(low, high)` or None, as `euler_sample`.
        return_trajectory: also return the start and the state after each step, `[N + 1, B, ...]`.

    Returns:
        x_0 `[B, ...]` (float32), or `(x_0, trajectory)`.

    Raises:
        ValueError, TypeError: as `euler_sample`.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> heun_sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, (2, 3), 5).shape
        (2, 3)

    References:
        Karras et al. 2022, Algorithm 1 (S_churn = 0).
    """
    shape, n, prediction = _check_common(key, model_fn, schedule, shape, num_steps, prediction, max_steps=False)
    rho = _static_number(rho, "rho", 0.0, low_open=True)
    return _karras(key, schedule, model_fn, shape, n, prediction, rho, _flag(fractional_timesteps,
                   "fractional_timesteps"), True, _check_clip(clip_x0), _flag(return_trajectory, "return_trajectory"))


@functools.partial(_backend.jit, static_argnums=(2, 3, 4, 5, 6, 7, 8, 9, 10))
def _karras(key, schedule, model_fn, shape, n, prediction, rho, fractional, heun, clip_x0, return_trajectory):
    init_key, _ = jax.random.split(key)
    z = jax.random.normal(init_key, shape, jnp.float32)
    ts, sig = _karras_ladder(schedule, n, rho, fractional)
    x = z * jnp.sqrt(1.0 + sig[0] ** 2)

    def denoise(x, t, s):
        return _clip(_x0_ve(_call(model_fn, x / jnp.sqrt(1.0 + s**2), t), x, s, prediction), clip_x0)

    def vp(x, s):
        return x / jnp.sqrt(1.0 + s**2)

    if not heun:
        def body(x, step):
            t, s, s_next = step
            d = (x - denoise(x, t, s)) / s
            x = x + (s_next - s) * d
            return x, (vp(x, s_next) if return_trajectory else None)

        x_final, xs = jax.lax.scan(body, x, (ts, sig[:-1], sig[1:]))
        return _finish(x_final, z, xs, return_trajectory)

    def heun_body(x, step):
        t, t_next, s, s_next = step
        d = (x - denoise(x, t, s)) / s
        x_euler = x + (s_next - s) * d
        d2 = (x_euler - denoise(x_euler, t_next, s_next)) / s_next
        x = x + (s_next - s) * 0.5 * (d + d2)
        return x, (vp(x, s_next) if return_trajectory else None)

    x, xs = jax.lax.scan(heun_body, x, (ts[:-1], ts[1:], sig[:-2], sig[1:-1]))
    x_final = denoise(x, ts[-1], sig[-2])  # the last step, Euler's to sigma = 0: x + (0 - s)(x - D)/s = D
    if return_trajectory:
        return x_final, jnp.concatenate([z[None], xs, x_final[None]], axis=0)
    return x_final


# --------------------------------------------------------------------------------------------
# DDIM with a timestep spacing
# --------------------------------------------------------------------------------------------


def ddim_spaced_sample(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    num_steps: int,
    prediction: str = "epsilon",
    *,
    spacing: str = "trailing",
    steps_offset: int = 0,
    eta: float = 0.0,
    return_trajectory: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """DDIM (Song et al. 2021) along `spaced_timesteps(T, num_steps, spacing, steps_offset)`,
    for a model of any parameterisation.

        x0_hat, eps_hat from the prediction at (x_t, t);   t_prev = the next timestep of the
        ladder (-1, abar = 1, after the last);
        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev))

    With "leading" spacing and `prediction="epsilon"` this is `ddim_sample`. diffusers'
    `DDIMScheduler.step` takes t_prev = t - T // num_steps instead, which is not the next
    timestep under "linspace" and "trailing" spacing (diffusers issues #9261, #11347, #12633):
    genjax follows the ladder. For a noise predictor at abar_t = 0 (zero terminal SNR, the first
    step of "linspace"/"trailing"), x0_hat = (x - eps) / sqrt(abar) is computed with abar floored
    at 2**-24 and stays finite (diffusers' DDIM returns inf there, issue #3851); x0 and v
    predictions need no floor.

    Args:
        key: PRNG key (the start noise; with eta > 0 also each step's noise).
        model_fn: `(x_t [B, ...], t [B] int32) -> prediction [B, ...]`.
        schedule: the `Schedule`.
        shape: `(B, ...)` (static).
        num_steps: 1 .. T (static).
        prediction: "epsilon", "x0" or "v".
        spacing: "trailing" (default: starts at T-1, Lin et al.), "linspace" or "leading".
        steps_offset: see `spaced_timesteps`.
        eta: the noise scale, a finite number >= 0 (0: deterministic; traced: clipped at 0).
        return_trajectory: also return the start noise and every state, `[num_steps + 1, B, ...]`.

    Returns:
        x_0 `[B, ...]` (float32), or `(x_0, trajectory)`.

    Raises:
        ValueError, TypeError: as `dpmpp_2m_sample`; a bad `steps_offset` or `eta`.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> ddim_spaced_sample(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, (2, 3), 5).shape
        (2, 3)

    References:
        Song et al. 2021, eqs. (12) and (16); Lin et al. 2024, Table 2.
    """
    shape, n, prediction = _check_common(key, model_fn, schedule, shape, num_steps, prediction)
    ts = spaced_timesteps(schedule.num_timesteps, n, spacing, steps_offset)
    eta = _checks.number(eta, "eta", 0.0)
    return _ddim(key, schedule, jnp.asarray(eta, jnp.float32), model_fn, shape, tuple(int(t) for t in ts),
                 prediction, _flag(return_trajectory, "return_trajectory"))


def _ddim_coefficients(schedule: Schedule, ts, t_prevs):
    abar = schedule.alphas_cumprod
    a_t = abar[ts]
    a_prev = jnp.where(t_prevs >= 0, abar[jnp.maximum(t_prevs, 0)], 1.0)
    return a_t, a_prev


@functools.partial(_backend.jit, static_argnums=(3, 4, 5, 6, 7))
def _ddim(key, schedule, eta, model_fn, shape, ts, prediction, return_trajectory):
    import numpy as np

    init_key, step_key = jax.random.split(key)
    x = jax.random.normal(init_key, shape, jnp.float32)
    ts = np.asarray(ts, np.int32)
    t_prevs = np.concatenate([ts[1:], np.array([-1], np.int32)])
    a_t, a_prev = _ddim_coefficients(schedule, jnp.asarray(ts), jnp.asarray(t_prevs))
    eta = jnp.maximum(eta, 0.0)
    steps = (jnp.asarray(ts), a_t, a_prev, jnp.arange(len(ts), dtype=jnp.int32))

    def body(x, step):
        t, a, ap, i = step
        out = _call(model_fn, x, t)
        sa, s1 = jnp.sqrt(a), jnp.sqrt(1.0 - a)
        if prediction == "epsilon":
            eps, x0 = out, (x - s1 * out) / jnp.sqrt(jnp.maximum(a, ABAR_FLOOR))
        elif prediction == "x0":
            x0, eps = out, (x - sa * out) / s1
        else:
            x0, eps = sa * x - s1 * out, sa * out + s1 * x
        var = (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)
        sigma = eta * jnp.sqrt(jnp.maximum(var, 0.0))
        noise = jax.random.normal(jax.random.fold_in(step_key, i), shape, jnp.float32)
        x = jnp.sqrt(ap) * x0 + jnp.sqrt(jnp.maximum(1.0 - ap - sigma**2, 0.0)) * eps + sigma * noise
        return x, (x if return_trajectory else None)

    x_final, xs = jax.lax.scan(body, x, steps)
    return _finish(x_final, x, xs, return_trajectory)


# --------------------------------------------------------------------------------------------
# One call for every sampler
# --------------------------------------------------------------------------------------------


def sample_with(
    key: jax.Array,
    model_fn: ModelFn,
    schedule: Schedule,
    shape: tuple[int, ...],
    sampler: str = "dpmpp_2m",
    num_steps: int | None = 20,
    prediction: str = "epsilon",
    **options: Any,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Samples with any sampler by name: one call for experiments that compare them.

    | sampler | function | model evaluations |
    |---|---|---|
    | "ddpm" | `sample` (ancestral; `num_steps` must be None or T) | T |
    | "ddim" | `ddim_spaced_sample` | num_steps |
    | "dpmpp_2m" | `dpmpp_2m_sample` | num_steps |
    | "dpmpp_2m_sde" | `dpmpp_2m_sample(..., sde=True)` | num_steps |
    | "euler" | `euler_sample` | num_steps |
    | "heun" | `heun_sample` | 2 num_steps - 1 |

    Args:
        key: PRNG key.
        model_fn: `(x_t [B, ...], t [B]) -> prediction [B, ...]`.
        schedule: the `Schedule`.
        shape: `(B, ...)`.
        sampler: one of the names above.
        num_steps: the number of steps (None: T, for "ddpm").
        prediction: "epsilon", "x0" or "v".
        **options: keyword options of the chosen function (e.g. `spacing`, `eta`, `rho`,
            `return_trajectory`, `variance` for "ddpm").

    Returns:
        What the chosen function returns.

    Raises:
        ValueError: an unknown `sampler`; "ddpm" with `num_steps` other than None or T; and what
            the chosen function raises (an unknown option is a TypeError).

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> sample_with(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, (2, 3), "heun", 4).shape
        (2, 3)
    """
    sampler = _checks.choice(sampler, "sampler", SAMPLERS)
    if sampler == "ddpm":
        _check_schedule(schedule)
        if num_steps is not None and num_steps != schedule.num_timesteps:
            raise ValueError(f"`num_steps` must be None or num_timesteps = {schedule.num_timesteps} for the "
                             f"'ddpm' sampler (one step per timestep), got {num_steps!r}")
        _callable(model_fn, "model_fn")
        return sample(key, to_eps_fn(model_fn, schedule, prediction), schedule, shape, **options)
    if num_steps is None:
        num_steps = _check_schedule(schedule).num_timesteps
    fn = {"ddim": ddim_spaced_sample, "dpmpp_2m": dpmpp_2m_sample, "euler": euler_sample,
          "heun": heun_sample}.get(sampler)
    if sampler == "dpmpp_2m_sde":
        fn, options = dpmpp_2m_sample, {**options, "sde": True}
    return fn(key, model_fn, schedule, shape, num_steps, prediction, **options)


# --------------------------------------------------------------------------------------------
# Training: min-SNR-gamma weighting
# --------------------------------------------------------------------------------------------


def min_snr_weight(schedule: Schedule, t: Any, gamma: float = 5.0, prediction: str = "epsilon") -> jax.Array:
    """The min-SNR-gamma loss weight of Hang et al. (2023) for each parameterisation.

        SNR_t = abar_t / (1 - abar_t)
        epsilon: min(SNR, gamma) / SNR  (= min(1, gamma / SNR); 1 at SNR = 0, its limit)
        x0:      min(SNR, gamma)
        v:       min(SNR, gamma) / (SNR + 1)

    Each makes the weighted loss equal min(SNR, gamma) ||x0_hat - x0||^2 whatever the network
    predicts (appendix B), which the tests check. The v weight is the paper's; diffusers'
    training examples used min(SNR + 1, gamma) / (SNR + 1) (issue #5654, fixed in PR #6307;
    issue #9451), and their epsilon weight min(SNR, gamma) / SNR is 0/0 = NaN at a zero
    terminal SNR: here it is 1.

    Args:
        schedule: the `Schedule`.
        t: int, `[]` or `[B]`, in `0 .. T-1` (concrete ones are checked; traced ones clipped).
        gamma: the clamp, a finite number > 0 (5 in the paper).
        prediction: "epsilon", "x0" or "v".

    Returns:
        float32 weights of `t`'s shape.

    Raises:
        ValueError: `t` out of range or not `[]`/`[B]`; `gamma` <= 0, infinite or NaN; an unknown
            `prediction`.
        TypeError: a non-integer `t`; a string, bool or None `gamma`.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(1000))
        >>> [round(float(w), 4) for w in min_snr_weight(s, jnp.array([0, 999]), 5.0, "v")]
        [0.0005, 0.0]

    References:
        Hang et al. 2023, eq. (9) and appendix B.
    """
    schedule = _check_schedule(schedule)
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    gamma = _checks.number(gamma, "gamma", 0.0, low_open=True)
    with jax.ensure_compile_time_eval():
        arr = _checks.int_array(t, "t")
    if arr.ndim > 1:
        raise ValueError(f"`t` must be a scalar or have shape [B], got shape {arr.shape}")
    t = _timestep(arr, jnp.zeros((arr.shape[0] if arr.ndim else 1,)), schedule)
    abar = schedule.alphas_cumprod[t]
    snr = abar / (1.0 - abar)
    clipped = jnp.minimum(snr, gamma)
    if prediction == "epsilon":
        pos = snr > 0
        return jnp.where(pos, jnp.minimum(1.0, gamma / jnp.where(pos, snr, 1.0)), 1.0).astype(jnp.float32)
    if prediction == "x0":
        return clipped.astype(jnp.float32)
    return (clipped / (snr + 1.0)).astype(jnp.float32)


def min_snr_loss(
    key: jax.Array, model_fn: ModelFn, schedule: Schedule, x0: Any, prediction: str = "epsilon",
    gamma: float = 5.0,
) -> jax.Array:
    """`ddpm_loss` weighted by `min_snr_weight`: per example, the min-SNR-gamma objective.

        loss_i = min_snr_weight(schedule, t_i, gamma, prediction) * ddpm_loss(key, ...)_i

    with the same timesteps and noise as `ddpm_loss(key, model_fn, schedule, x0, prediction)`
    (drawn from `jax.random.split(key)`). Trainable end to end for every parameterisation,
    including a zero-terminal-SNR schedule (finite value and gradient).

    Args:
        key: PRNG key.
        model_fn: `(x_t [B, ...], t [B] int32) -> prediction [B, ...]`.
        schedule: the `Schedule`.
        x0: a data batch `[B, ...]`.
        prediction: "epsilon", "x0" or "v".
        gamma: the clamp, a finite number > 0.

    Returns:
        float32 `[B]`.

    Raises:
        ValueError, TypeError: as `ddpm_loss` and `min_snr_weight`.

    Examples:
        >>> from genjax.diffusion import make_schedule, linear_beta_schedule
        >>> s = make_schedule(linear_beta_schedule(100))
        >>> min_snr_loss(jax.random.key(0), lambda x, t: jnp.zeros_like(x), s, jnp.ones((4, 2)), "v").shape
        (4,)

    References:
        Hang et al. 2023, eq. (9).
    """
    key = _checks.key(key)
    _callable(model_fn, "model_fn")
    schedule = _check_schedule(schedule)
    prediction = _checks.choice(prediction, "prediction", _PREDICTIONS)
    gamma = _checks.number(gamma, "gamma", 0.0, low_open=True)
    x0 = _float_array(x0, "x0")
    loss = ddpm_loss(key, model_fn, schedule, x0, prediction)
    t_key, _ = jax.random.split(key)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps, dtype=jnp.int32)  # as ddpm_loss
    return min_snr_weight(schedule, t, gamma, prediction) * loss


def publish(namespace: dict[str, Any], names: tuple[str, ...]) -> None:
    """Makes the functions `names` of a private module's `namespace` genjax.diffusion's own (its
    namespace, `__all__`, `__module__`)."""
    import sys

    module = sys.modules["genjax.diffusion"]
    for name in names:
        fn = namespace[name]
        fn.__module__ = module.__name__
        setattr(module, name, fn)
    module.__all__ = [n for n in module.__all__ if n not in names] + list(names)


PUBLIC = (
    "rescale_zero_terminal_snr", "zero_terminal_snr_schedule", "karras_sigmas", "spaced_timesteps",
    "dpmpp_2m_sample", "euler_sample", "heun_sample", "ddim_spaced_sample", "sample_with",
    "min_snr_weight", "min_snr_loss",
)
publish(globals(), PUBLIC)

# learned variances (hybrid loss, its sampler): written on top of this module, published the same way
from genjax import _learned_variance  # noqa: E402,F401
