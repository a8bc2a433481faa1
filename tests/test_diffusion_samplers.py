"""Tests of the fast samplers, zero-terminal-SNR schedules and min-SNR weighting (issue 18).

Sources of the reference values:

* diffusers 0.42.1: the logic of `DPMSolverMultistepScheduler` (`set_timesteps`,
  `convert_model_output`, `dpm_solver_first_order_update`, `multistep_dpm_solver_second_order_update`,
  `step`), `EulerDiscreteScheduler` / `HeunDiscreteScheduler` (`set_timesteps` with
  `use_karras_sigmas=True`, `_sigma_to_t`, `_convert_to_karras`, `scale_model_input`, `step`),
  `DDIMScheduler` (`set_timesteps`, `step`) and `rescale_zero_terminal_snr` is transcribed below
  into NumPy (float64), written from reading those files; CI runs these. Where diffusers and torch
  are importable, `test_live_diffusers_*` runs diffusers itself on the same inputs (checked with
  diffusers 0.42.1, torch 2.13.0 in a dev venv), which also checks the transcriptions.
* The Gaussian-mixture tests use the exact (closed-form) denoiser of a 1-D mixture, so the only
  error left is the sampler's: its measured order (the log-log slope of the error against the
  number of steps) is checked against the paper's (DDIM and Euler: 1, Song et al. 2021 / Lu et al.
  2022 show DDIM is a first-order solver; DPM-Solver++(2M): 2, Lu et al. 2022; Heun: 2, Karras et
  al. 2022), and the samples' moments against the mixture's.
* Where diffusers is wrong (the issue threads are cited at each test), the test states what
  diffusers does and asserts what genjax does instead.
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import _samplers as S
from genjax import diffusion as df

T = 1000
LINEAR = df.make_schedule(df.linear_beta_schedule(T))
COSINE = df.make_schedule(df.cosine_beta_schedule(T))
KEY = jax.random.key(3)
SHAPE = (4, 3)


def _abar(schedule) -> np.ndarray:
    return np.asarray(schedule.alphas_cumprod, np.float64)


def np_model(x, t):
    """The recorded test model (NumPy): smooth in x and t, not a denoiser of anything."""
    t = np.asarray(t, np.float64).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.6 * np.tanh(x) + 0.2 * x * np.cos(t / 300.0) + 1e-3 * t / 10.0


def jax_model(x, t):
    t = t.astype(jnp.float32).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.6 * jnp.tanh(x) + 0.2 * x * jnp.cos(t / 300.0) + 1e-3 * t / 10.0


def start_noise(key=KEY, shape=SHAPE):
    return np.asarray(jax.random.normal(jax.random.split(key)[0], shape, jnp.float32), np.float64)


def step_noise(i, key=KEY, shape=SHAPE):
    return np.asarray(jax.random.normal(jax.random.fold_in(jax.random.split(key)[1], i), shape, jnp.float32),
                      np.float64)


# ------------------------------------------------------------------------------ diffusers, in NumPy


def np_rescale_zero_terminal_snr(betas):
    """diffusers `rescale_zero_terminal_snr`."""
    alphas_bar_sqrt = np.sqrt(np.cumprod(1.0 - betas))
    first, last = alphas_bar_sqrt[0].copy(), alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = np.concatenate([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def np_sigma_to_t(sigma, log_sigmas):
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return ((1 - w) * low_idx + w * high_idx).reshape(np.shape(sigma))


def np_karras(in_sigmas, n, rho=7.0):
    sigma_min, sigma_max = in_sigmas[-1], in_sigmas[0]
    ramp = np.linspace(0, 1, n)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def np_train_sigmas(abar):
    return np.sqrt((1 - abar) / abar)


def np_dpm_timesteps(T, n, spacing):
    if spacing == "linspace":
        return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1].astype(np.int64)
    return (np.arange(T, 0, -T / n).round() - 1).astype(np.int64)


def np_dpm_sample(abar, n, x, model, prediction="epsilon", sde=False, spacing="linspace", noises=None):
    """DPMSolverMultistepScheduler(solver_order=2, midpoint, lower_order_final, final_sigmas_type="zero")."""
    ts = np_dpm_timesteps(len(abar), n, spacing)
    sigmas = np.interp(ts, np.arange(len(abar)), np_train_sigmas(abar))
    sigmas = np.concatenate([sigmas, [0.0]])

    def alpha_sigma(s):
        a = 1.0 / np.sqrt(s**2 + 1)
        return a, s * a

    outputs, lower_order_nums = [None, None], 0
    for i, t in enumerate(ts):
        lower_order_final = i == n - 1  # final_sigmas_type == "zero"
        a_s, s_s = alpha_sigma(sigmas[i])
        out = model(x, np.full(x.shape[0], t))
        if prediction == "epsilon":
            x0 = (x - s_s * out) / a_s
        elif prediction == "x0":
            x0 = out
        else:
            x0 = a_s * x - s_s * out
        outputs = [outputs[1], x0]
        a_t, s_t = alpha_sigma(sigmas[i + 1])
        with np.errstate(divide="ignore"):
            lam_t = np.log(a_t) - np.log(s_t)
        lam_s0 = np.log(a_s) - np.log(s_s)
        h = lam_t - lam_s0
        if lower_order_nums < 1 or lower_order_final:  # first order
            if sde:
                x = (s_t / s_s * np.exp(-h)) * x + (a_t * (1 - np.exp(-2.0 * h))) * x0 \
                    + s_t * np.sqrt(1.0 - np.exp(-2 * h)) * noises[i]
            else:
                x = (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * x0
        else:
            a_1, s_1 = alpha_sigma(sigmas[i - 1])
            lam_s1 = np.log(a_1) - np.log(s_1)
            h_0 = lam_s0 - lam_s1
            r0 = h_0 / h
            D0, D1 = outputs[1], (1.0 / r0) * (outputs[1] - outputs[0])
            if sde:
                x = (s_t / s_s * np.exp(-h)) * x + (a_t * (1 - np.exp(-2.0 * h))) * D0 \
                    + 0.5 * (a_t * (1 - np.exp(-2.0 * h))) * D1 + s_t * np.sqrt(1.0 - np.exp(-2.0 * h)) * noises[i]
            else:
                x = (s_t / s_s) * x - (a_t * (np.exp(-h) - 1.0)) * D0 - 0.5 * (a_t * (np.exp(-h) - 1.0)) * D1
        lower_order_nums = min(lower_order_nums + 1, 2)
    return x


def np_karras_ladder(abar, n):
    """EulerDiscreteScheduler / HeunDiscreteScheduler set_timesteps, linspace + use_karras_sigmas."""
    T = len(abar)
    timesteps = np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
    sig_train = np_train_sigmas(abar)
    log_sigmas = np.log(sig_train)
    sigmas = np.interp(timesteps, np.arange(T), sig_train)
    sigmas = np_karras(sigmas, n)
    timesteps = np.array([np_sigma_to_t(s, log_sigmas) for s in sigmas])
    return timesteps, np.concatenate([sigmas, [0.0]])


def _np_x0_ve(out, x, sigma, prediction):
    if prediction == "epsilon":
        return x - sigma * out
    if prediction == "x0":
        return out
    return out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)


def np_euler_sample(abar, n, z, model, prediction="epsilon"):
    ts, sigmas = np_karras_ladder(abar, n)
    x = z * np.sqrt(sigmas.max() ** 2 + 1)  # init_noise_sigma (linspace spacing)
    for i, t in enumerate(ts):
        s = sigmas[i]
        out = model(x / np.sqrt(s**2 + 1), np.full(x.shape[0], t))
        x0 = _np_x0_ve(out, x, s, prediction)
        x = x + (x - x0) / s * (sigmas[i + 1] - s)
    return x


def np_heun_sample(abar, n, z, model, prediction="epsilon"):
    ts, sigmas = np_karras_ladder(abar, n)
    sigmas = np.concatenate([sigmas[:1], np.repeat(sigmas[1:-1], 2), sigmas[-1:]])
    ts = np.concatenate([ts[:1], np.repeat(ts[1:], 2)])
    x = z * np.sqrt(sigmas.max() ** 2 + 1)
    dt = prev_d = first_sample = None
    for idx, t in enumerate(ts):
        s_in = sigmas[idx]
        out = model(x / np.sqrt(s_in**2 + 1), np.full(x.shape[0], t))
        if dt is None:  # state_in_first_order
            s, s_next = sigmas[idx], sigmas[idx + 1]
            x0 = _np_x0_ve(out, x, s, prediction)
            d = (x - x0) / s
            dt, prev_d, first_sample = s_next - s, d, x
            x = x + d * dt
        else:
            s, s_next = sigmas[idx - 1], sigmas[idx]
            x0 = _np_x0_ve(out, x, s_next, prediction)
            d = (x - x0) / s_next
            x = first_sample + 0.5 * (prev_d + d) * dt
            dt = prev_d = first_sample = None
    return x


def np_ddim_timesteps(T, n, spacing, steps_offset=0):
    if spacing == "linspace":
        return np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + steps_offset
    return (np.round(np.arange(T, 0, -T / n)) - 1).astype(np.int64)


def np_ddim_sample(abar, n, x, model, prediction="epsilon", spacing="leading", follow_ladder=False,
                   steps_offset=0):
    """DDIMScheduler.step (eta = 0, set_alpha_to_one); `follow_ladder` replaces its
    prev_timestep = t - T // n by the next entry of the ladder (the fix of issues #9261/#12633)."""
    T = len(abar)
    ts = np_ddim_timesteps(T, n, spacing, steps_offset)
    for i, t in enumerate(ts):
        prev = (ts[i + 1] if i + 1 < n else -1) if follow_ladder else t - T // n
        a_t = abar[t]
        a_prev = abar[prev] if prev >= 0 else 1.0
        out = model(x, np.full(x.shape[0], t))
        with np.errstate(divide="ignore", invalid="ignore"):
            if prediction == "epsilon":
                x0, eps = (x - np.sqrt(1 - a_t) * out) / np.sqrt(a_t), out
            elif prediction == "x0":
                x0, eps = out, (x - np.sqrt(a_t) * out) / np.sqrt(1 - a_t)
            else:
                x0, eps = np.sqrt(a_t) * x - np.sqrt(1 - a_t) * out, np.sqrt(a_t) * out + np.sqrt(1 - a_t) * x
            x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return x


def _close(a, b, rtol=2e-4, atol=2e-4):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------ ladders and schedules


@pytest.mark.parametrize("fn", [df.linear_beta_schedule, df.cosine_beta_schedule])
def test_zero_terminal_snr_rescaling_matches_diffusers(fn):
    betas = fn(T)
    got = S.rescale_zero_terminal_snr(betas)
    np.testing.assert_allclose(got, np_rescale_zero_terminal_snr(betas), rtol=1e-12, atol=1e-15)
    assert got[-1] == 1.0
    abar = np.cumprod(1 - got)
    np.testing.assert_allclose(abar[0], np.cumprod(1 - betas)[0], rtol=1e-12)  # abar_0 kept
    sched = S.zero_terminal_snr_schedule(betas)
    assert float(sched.alphas_cumprod[-1]) == 0.0 and float(sched.sqrt_one_minus_alphas_cumprod[-1]) == 1.0
    _close(sched.alphas_cumprod[:-1], abar[:-1], rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(np.asarray(sched.alphas_cumprod)) < 0)


@pytest.mark.parametrize("n", [1, 3, 7, 10, 50, 999, 1000])
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_ddim_ladders_match_diffusers(spacing, n):
    got = S.spaced_timesteps(T, n, spacing)
    np.testing.assert_array_equal(got, np_ddim_timesteps(T, n, spacing))
    assert got.dtype == np.int32 and np.all(np.diff(got) < 0) and got[0] <= T - 1 and got[-1] >= 0
    if spacing == "trailing" or (spacing == "linspace" and n > 1):  # (linspace(0, T-1, 1) is [0], as diffusers)
        assert got[0] == T - 1  # Lin et al. Table 2: starts at the last timestep
    if spacing == "leading":
        np.testing.assert_array_equal(got, df.ddim_timesteps(T, n))
    if n < T:
        np.testing.assert_array_equal(S.spaced_timesteps(T, n, "leading", 1), np_ddim_timesteps(T, n, "leading", 1))
    else:
        with pytest.raises(ValueError, match="`steps_offset`"):  # 1000 would be past the last timestep
            S.spaced_timesteps(T, n, "leading", 1)


@pytest.mark.parametrize("n", [1, 5, 14, 20])
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_dpm_ladders_match_diffusers(spacing, n):
    np.testing.assert_array_equal(S._dpm_timesteps(T, n, spacing), np_dpm_timesteps(T, n, spacing))


@pytest.mark.parametrize("n", [2, 10, 25])
def test_karras_ladder_matches_diffusers(n):
    ref_t, ref_s = np_karras_ladder(_abar(LINEAR), n)
    t, s = S._karras_ladder(LINEAR, n, 7.0, fractional=True)
    _close(s, ref_s, rtol=1e-5, atol=1e-7)
    _close(t, ref_t, rtol=1e-4, atol=2e-3)
    sig = np_train_sigmas(_abar(LINEAR))
    np.testing.assert_allclose(S.karras_sigmas(n, sig[0], sig[-1]), ref_s, rtol=1e-6)
    t_int, s_int = S._karras_ladder(LINEAR, n, 7.0, fractional=False)  # snapped: the level of the timestep told
    np.testing.assert_array_equal(np.asarray(t_int), np.round(ref_t).astype(np.int32))
    _close(s_int[:-1], sig[np.round(ref_t).astype(int)], rtol=1e-5)


def test_karras_ladder_final_step_goes_to_zero():
    """Karras et al. eq. (5): sigma_N = 0, and the step before it starts at sigma_min. diffusers
    0.42.1 with use_karras_sigmas=True and final_sigmas_type="sigma_min" appends sigma_min to a
    ladder that already ends at sigma_min: a zero-length last step (h = 0), the dummy step that PR
    huggingface/diffusers#6477 removed for the default final_sigmas_type only."""
    assert S.karras_sigmas(1, 0.0292, 14.6).tolist() == [pytest.approx(14.6), 0.0]
    for n in (2, 5, 20):
        s = S.karras_sigmas(n, 0.0292, 14.6)
        assert s[-1] == 0.0 and s[-2] == pytest.approx(0.0292) and s[0] == pytest.approx(14.6)
        assert np.all(np.diff(s) < 0), "every step has a positive length"
    sig = np_train_sigmas(_abar(LINEAR))
    diffusers_like = np.concatenate([np_karras(sig[::-1], 5), [sig[0]]])  # final_sigmas_type="sigma_min"
    assert diffusers_like[-1] == diffusers_like[-2]  # what diffusers does: a step of length 0
    _, s = S._karras_ladder(LINEAR, 5, 7.0, fractional=True)
    assert float(s[-1]) == 0.0 and float(s[-2]) > 0.0


# ------------------------------------------------------------------------------ samplers vs diffusers


@pytest.mark.parametrize("n,spacing,sde,prediction", [
    (7, "linspace", sde, p) for sde in (False, True) for p in ("epsilon", "x0", "v")] + [
    (n, sp, sde, "epsilon") for n, sp in ((1, "linspace"), (2, "linspace"), (20, "linspace"), (6, "leading"),
                                          (6, "trailing")) for sde in (False, True)])
def test_dpmpp_2m_matches_diffusers(n, spacing, sde, prediction):
    got = S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, n, prediction, sde=sde, spacing=spacing)
    noises = [step_noise(i) for i in range(n)]
    ref = np_dpm_sample(_abar(LINEAR), n, start_noise(), np_model, prediction, sde, spacing, noises)
    _close(got, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method,n,prediction", [
    (m, 6, p) for m in ("euler", "heun") for p in ("epsilon", "x0", "v")] + [
    (m, n, "epsilon") for m in ("euler", "heun") for n in (2, 15)])
def test_euler_and_heun_match_diffusers(method, n, prediction):
    fn, ref_fn = (S.euler_sample, np_euler_sample) if method == "euler" else (S.heun_sample, np_heun_sample)
    got = fn(KEY, jax_model, LINEAR, SHAPE, n, prediction, fractional_timesteps=True)
    ref = ref_fn(_abar(LINEAR), n, start_noise(), np_model, prediction)
    _close(got, ref, rtol=1e-3, atol=1e-3)


def test_karras_single_step_starts_at_sigma_max():
    """diffusers' "linspace" spacing with one step is linspace(0, T-1, 1) = [0]: its Karras ladder is
    then [sigma_0, 0], one step from the lowest noise level, which cannot denoise pure noise.
    genjax's one step goes from sigma_max (t = T-1) to 0."""
    _, ref = np_karras_ladder(_abar(LINEAR), 1)
    sig = np.asarray(S._train_sigmas(LINEAR))
    assert ref[0] == pytest.approx(sig[0], rel=1e-6)
    _, s = S._karras_ladder(LINEAR, 1, 7.0, fractional=True)
    assert float(s[0]) == pytest.approx(sig[-1], rel=1e-5) and float(s[1]) == 0.0


def test_heun_takes_two_evaluations_per_step_but_the_last():
    calls = []

    def model(x, t):
        jax.debug.callback(lambda tt: calls.append(np.asarray(tt)[0]), t)
        return jnp.zeros_like(x)

    jax.block_until_ready(S.heun_sample(KEY, model, LINEAR, (2, 1), 6))
    assert len(calls) == 2 * 6 - 1
    ref_t, _ = np_karras_ladder(_abar(LINEAR), 6)
    expected = np.concatenate([ref_t[:1], np.repeat(ref_t[1:], 2)])  # diffusers' interleaved timesteps
    np.testing.assert_array_equal(sorted(calls, reverse=True), np.round(expected).astype(int))


@pytest.mark.parametrize("n,prediction", [(10, "epsilon"), (10, "x0"), (10, "v"), (1, "epsilon"), (50, "v")])
def test_ddim_leading_matches_diffusers_and_ddim_sample(n, prediction):
    got = S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, n, prediction, spacing="leading")
    ref = np_ddim_sample(_abar(LINEAR), n, start_noise(), np_model, prediction, "leading")
    _close(got, ref, rtol=1e-3, atol=1e-3)
    if prediction == "epsilon":
        _close(got, df.ddim_sample(KEY, jax_model, LINEAR, SHAPE, n), rtol=1e-5, atol=1e-5)
    off = S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, n, prediction, spacing="leading", steps_offset=1)
    _close(off, np_ddim_sample(_abar(LINEAR), n, start_noise(), np_model, prediction, "leading", steps_offset=1),
           rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("spacing,n", [("trailing", 10), ("trailing", 7), ("trailing", 3), ("linspace", 10),
                                       ("linspace", 4)])
def test_ddim_previous_timestep_follows_the_ladder(spacing, n):
    """diffusers' DDIMScheduler.step takes prev_timestep = t - T // n, which under "linspace" and
    "trailing" spacing is not the next timestep of its own ladder (huggingface/diffusers#9261,
    #11347, #12633; PRs #13108 and #14357 unmerged): e.g. trailing with n = 3 goes 999 -> 666 ->
    333 -> 0 and ends at abar_0 instead of the end of the chain. genjax steps along the ladder."""
    got = S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, n, spacing=spacing)
    fixed = np_ddim_sample(_abar(LINEAR), n, start_noise(), np_model, spacing=spacing, follow_ladder=True)
    diffusers = np_ddim_sample(_abar(LINEAR), n, start_noise(), np_model, spacing=spacing)
    _close(got, fixed, rtol=1e-3, atol=1e-3)
    ts = np_ddim_timesteps(T, n, spacing)
    if np.all(ts - T // n == np.concatenate([ts[1:], [ts[-1] - T // n]])) and ts[-1] - T // n < 0:
        _close(diffusers, fixed, rtol=1e-6, atol=1e-6)  # trailing with n | T: the two agree
    else:
        assert np.max(np.abs(diffusers - fixed)) > 1e-3


def test_zero_terminal_snr_epsilon_sampling_stays_finite():
    """With rescale_betas_zero_snr and prediction_type="epsilon", diffusers' DDIMScheduler divides
    by sqrt(abar_{T-1}) = 0 at the first "trailing"/"linspace" step and returns inf/NaN
    (huggingface/diffusers#3851, #5103). genjax floors abar at 2**-24 for the epsilon -> x0
    conversion (as diffusers' DPM and Euler schedulers do for every conversion): finite."""
    zsnr = S.zero_terminal_snr_schedule(df.linear_beta_schedule(T))
    with np.errstate(all="ignore"):
        diffusers = np_ddim_sample(_abar(zsnr), 10, start_noise(), np_model, spacing="trailing")
    assert not np.all(np.isfinite(diffusers))
    for sampler in ("ddim", "dpmpp_2m", "dpmpp_2m_sde", "euler", "heun"):
        for prediction in ("epsilon", "x0", "v"):
            x = S.sample_with(KEY, jax_model, zsnr, SHAPE, sampler, 10, prediction)
            assert np.all(np.isfinite(np.asarray(x))), (sampler, prediction)
    # v-prediction at abar = 0 needs no floor: DDIM equals diffusers' (finite there) step for step
    got = S.ddim_spaced_sample(KEY, jax_model, zsnr, SHAPE, 10, "v", spacing="trailing")
    _close(got, np_ddim_sample(_abar(zsnr), 10, start_noise(), np_model, "v", "trailing"), rtol=1e-3, atol=1e-3)
    # an exact noise predictor at the first step (x_T is pure noise, eps = x_T) gives a finite x0
    x = S.ddim_spaced_sample(KEY, lambda x, t: jnp.where((t == T - 1)[:, None], x, 0.0 * x), zsnr, SHAPE, 2)
    assert np.all(np.isfinite(np.asarray(x)))


# ------------------------------------------------------------------------------ min-SNR weighting


def test_min_snr_weights_per_parameterisation():
    t = jnp.arange(T)
    abar = _abar(LINEAR)
    snr = abar / (1 - abar)
    g = 5.0
    _close(S.min_snr_weight(LINEAR, t, g, "epsilon"), np.minimum(snr, g) / snr, rtol=1e-5, atol=0)
    _close(S.min_snr_weight(LINEAR, t, g, "x0"), np.minimum(snr, g), rtol=1e-5, atol=0)
    _close(S.min_snr_weight(LINEAR, t, g, "v"), np.minimum(snr, g) / (snr + 1), rtol=1e-5, atol=0)
    # diffusers' examples before PR #6307 (issue #5654; still reported in #9451): min(SNR + 1, g) / (SNR + 1)
    old = np.minimum(snr + 1, g) / (snr + 1)
    assert np.max(np.abs(np.asarray(S.min_snr_weight(LINEAR, t, g, "v")) - old)) > 0.5


def test_min_snr_weight_at_zero_terminal_snr_is_finite():
    """At SNR = 0 the epsilon weight min(SNR, g) / SNR is 0/0 in diffusers' training examples (NaN
    loss, TiankaiHang/Min-SNR-Diffusion-Training#2 and #4); here it is its limit 1, and v's is 0."""
    zsnr = S.zero_terminal_snr_schedule(df.linear_beta_schedule(T))
    w = {p: float(S.min_snr_weight(zsnr, T - 1, 5.0, p)) for p in ("epsilon", "x0", "v")}
    assert w == {"epsilon": 1.0, "x0": 0.0, "v": 0.0}
    with np.errstate(all="ignore"):
        snr = np.float64(0.0)
        assert np.isnan(np.minimum(snr, 5.0) / snr)  # the diffusers example's formula


@pytest.mark.parametrize("t", [0, 100, 500, 900, 999])
def test_min_snr_losses_agree_across_parameterisations(t):
    """Hang et al. appendix B: the three weighted losses are all min(SNR, g) ||x0_hat - x0||^2."""
    rng = np.random.default_rng(t)
    x0, noise, x0_hat = (jnp.asarray(rng.normal(size=(5, 4)), jnp.float32) for _ in range(3))
    xt = df.q_sample(LINEAR, x0, t, noise)
    eps_hat = df.predict_eps(LINEAR, xt, t, x0_hat)
    v_hat = df.v_target(LINEAR, x0_hat, t, eps_hat)
    targets = {"epsilon": (eps_hat, noise), "x0": (x0_hat, x0), "v": (v_hat, df.v_target(LINEAR, x0, t, noise))}
    losses = {p: float(S.min_snr_weight(LINEAR, t, 5.0, p)) * float(jnp.mean((a - b) ** 2))
              for p, (a, b) in targets.items()}
    abar = float(LINEAR.alphas_cumprod[t])
    expected = min(abar / (1 - abar), 5.0) * float(jnp.mean((x0_hat - x0) ** 2))
    for p, v in losses.items():
        assert v == pytest.approx(expected, rel=2e-3), (p, losses)


def test_min_snr_loss_is_the_weighted_ddpm_loss_and_trains_end_to_end():
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(64, 1)) * 0.5 + 1.0, jnp.float32)
    for prediction in ("epsilon", "x0", "v"):
        loss = S.min_snr_loss(KEY, jax_model, LINEAR, x0, prediction, 5.0)
        base = df.ddpm_loss(KEY, jax_model, LINEAR, x0, prediction)
        t = jax.random.randint(jax.random.split(KEY)[0], (64,), 0, T, dtype=jnp.int32)
        _close(loss, S.min_snr_weight(LINEAR, t, 5.0, prediction) * base, rtol=1e-6, atol=0)
    # a linear-in-features v-predictor on a zero-terminal-SNR schedule, trained by SGD
    zsnr = S.zero_terminal_snr_schedule(df.linear_beta_schedule(100))

    def model(p, x, t):
        s = t.astype(jnp.float32)[:, None] / 100.0
        feats = jnp.concatenate([x, x * s, s, jnp.ones_like(s), x * s**2, s**2], axis=1)
        return feats @ p

    def objective(p, k):
        return jnp.mean(S.min_snr_loss(k, lambda x, t: model(p, x, t), zsnr, x0, "v", 5.0))

    p = jnp.zeros((6, 1))
    grad = jax.jit(jax.value_and_grad(objective))
    first, _ = grad(p, KEY)
    for i in range(300):
        value, g = grad(p, jax.random.fold_in(KEY, i))
        assert np.all(np.isfinite(np.asarray(g)))
        p = p - 0.5 * g
    last = np.mean([float(objective(p, jax.random.fold_in(KEY, 10_000 + i))) for i in range(5)])
    assert last < 0.7 * float(first), (float(first), last)


# ------------------------------------------------------------------------------ a Gaussian mixture

W = np.array([0.3, 0.5, 0.2])
MU = np.array([-2.0, 0.5, 2.5])
VAR = np.array([0.09, 0.16, 0.04])
LOG_SIGMAS = jnp.log(S._train_sigmas(LINEAR))


def mixture_eps(x, t):
    """The exact noise prediction E[eps | x_t] of the 1-D mixture sum_k W_k N(MU_k, VAR_k) at the
    noise level of timestep t (fractional t: log sigma linear between timesteps, as `_sigma_to_t`)."""
    ls = jnp.interp(t.astype(jnp.float32), jnp.arange(T, dtype=jnp.float32), LOG_SIGMAS)[:, None]
    s = jnp.exp(ls)
    a = 1.0 / jnp.sqrt(1.0 + s**2)
    sv = s * a
    var = a**2 * VAR + sv**2
    m = a * MU
    r = jax.nn.softmax(jnp.log(W) - 0.5 * jnp.log(var) - 0.5 * (x - m) ** 2 / var, axis=-1)
    return -sv * jnp.sum(r * (-(x - m) / var), axis=-1, keepdims=True)


MIX_MEAN = float(np.sum(W * MU))
MIX_M2 = float(np.sum(W * (VAR + MU**2)))
MIX_SD_M2 = float(np.sqrt(np.sum(W * (MU**4 + 6 * MU**2 * VAR + 3 * VAR**2)) - MIX_M2**2))


@pytest.mark.parametrize("sampler,order,options", [
    ("ddim", 1.0, dict(spacing="trailing")),
    ("euler", 1.0, {}),
    ("dpmpp_2m", 2.0, {}),
    ("heun", 2.0, {}),
])
def test_samplers_converge_to_the_mixture_at_their_order(sampler, order, options):
    """Self-convergence: err(N) = mean |x_N - x_2N| from the same start noise (the ODE samplers are
    deterministic and all start at t = T-1), and the slope of log err against log N, for N = 16,
    32, 64. Measured (CPU, float32): DDIM -1.07, Euler -1.1, DPM-Solver++(2M) -1.9, Heun -2.3."""
    batch = 8192
    ns = (16, 32, 64, 128)
    xs = {n: np.asarray(S.sample_with(KEY, mixture_eps, LINEAR, (batch, 1), sampler, n, **options), np.float64)
          for n in ns}
    errs = [np.mean(np.abs(xs[n] - xs[2 * n])) for n in ns[:-1]]
    slope = np.polyfit(np.log(ns[:-1]), np.log(errs), 1)[0]
    assert -order - 0.45 < slope < -order + 0.45, (sampler, errs, slope)
    x = xs[128]
    assert abs(np.mean(x) - MIX_MEAN) < 4 * np.sqrt(MIX_M2 / batch) + 0.01
    assert abs(np.mean(x**2) - MIX_M2) < 4 * MIX_SD_M2 / np.sqrt(batch) + 0.02


def test_sde_sampler_converges_to_the_mixture_in_distribution():
    """SDE-DPM-Solver++(2M) is stochastic, so its error is measured in distribution: the second
    moment's error falls as the steps grow and ends within the Monte Carlo noise (the order is not
    asserted: measured 0.07, 0.03, 0.003 at 20, 40, 80 steps with 200k samples, noise ~0.01)."""
    batch = 200_000
    errs = []
    for n in (5, 80):
        x = np.asarray(S.sample_with(KEY, mixture_eps, LINEAR, (batch, 1), "dpmpp_2m_sde", n), np.float64)
        errs.append(abs(np.mean(x**2) - MIX_M2))
    noise = MIX_SD_M2 / np.sqrt(batch)
    assert errs[0] > 20 * noise and errs[1] < 5 * noise + 0.01, errs
    assert abs(np.mean(x) - MIX_MEAN) < 5 * np.sqrt(MIX_M2 / batch) + 0.005


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "euler", "heun"])
def test_every_parameterisation_gives_the_same_samples(sampler):
    """The exact mixture denoiser given as epsilon, x0 or v gives the same samples."""
    sig = S._train_sigmas(LINEAR)

    def coefs(t):
        s = jnp.exp(jnp.interp(t.astype(jnp.float32), jnp.arange(T, dtype=jnp.float32), jnp.log(sig)))[:, None]
        a = 1.0 / jnp.sqrt(1.0 + s**2)
        return a, s * a

    def x0_fn(x, t):
        a, sv = coefs(t)
        return (x - sv * mixture_eps(x, t)) / a

    def v_fn(x, t):
        a, sv = coefs(t)
        return a * mixture_eps(x, t) - sv * x0_fn(x, t)

    ref = S.sample_with(KEY, mixture_eps, LINEAR, (256, 1), sampler, 12)
    for prediction, fn in (("x0", x0_fn), ("v", v_fn)):
        _close(S.sample_with(KEY, fn, LINEAR, (256, 1), sampler, 12, prediction), ref, rtol=1e-3, atol=2e-3)


# ------------------------------------------------------------------------------ the one-call API, checks


def test_sample_with_dispatches_to_each_sampler():
    for name, fn, kw in (("ddim", S.ddim_spaced_sample, {}), ("dpmpp_2m", S.dpmpp_2m_sample, {}),
                         ("dpmpp_2m_sde", S.dpmpp_2m_sample, dict(sde=True)), ("euler", S.euler_sample, {}),
                         ("heun", S.heun_sample, {})):
        _close(S.sample_with(KEY, jax_model, LINEAR, SHAPE, name, 5, "v"),
               fn(KEY, jax_model, LINEAR, SHAPE, 5, "v", **kw), rtol=0, atol=0)
    short = df.make_schedule(df.linear_beta_schedule(20))
    _close(S.sample_with(KEY, jax_model, short, SHAPE, "ddpm", None),
           df.sample(KEY, jax_model, short, SHAPE), rtol=0, atol=0)
    x, traj = S.sample_with(KEY, jax_model, LINEAR, SHAPE, "heun", 4, return_trajectory=True)
    assert traj.shape == (5,) + SHAPE and np.allclose(traj[-1], x)
    for name in ("ddim", "dpmpp_2m", "euler"):
        x, traj = S.sample_with(KEY, jax_model, LINEAR, SHAPE, name, 4, return_trajectory=True)
        assert traj.shape == (5,) + SHAPE and np.allclose(traj[-1], x) and np.allclose(traj[0], start_noise())


@pytest.mark.parametrize("call,exc,arg", [
    (lambda: S.sample_with(KEY, jax_model, LINEAR, SHAPE, "dpm"), ValueError, "sampler"),
    (lambda: S.sample_with(KEY, jax_model, LINEAR, SHAPE, "ddpm", 10), ValueError, "num_steps"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, 0), ValueError, "num_steps"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, T + 1), ValueError, "num_steps"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, 2.0), TypeError, "num_steps"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, 5, "sample"), ValueError, "prediction"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, 5, spacing="even"), ValueError, "spacing"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, 5, sde=1), TypeError, "sde"),
    (lambda: S.dpmpp_2m_sample(None, jax_model, LINEAR, SHAPE, 5), TypeError, "key"),
    (lambda: S.dpmpp_2m_sample(KEY, "model", LINEAR, SHAPE, 5), TypeError, "model_fn"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR.betas, SHAPE, 5), TypeError, "schedule"),
    (lambda: S.dpmpp_2m_sample(KEY, jax_model, LINEAR, (), 5), ValueError, "shape"),
    (lambda: S.dpmpp_2m_sample(KEY, lambda x, t: x[:, :1], LINEAR, SHAPE, 5), ValueError, "model_fn(x_t, t)"),
    (lambda: S.euler_sample(KEY, jax_model, LINEAR, SHAPE, 5, rho=0.0), ValueError, "rho"),
    (lambda: S.heun_sample(KEY, jax_model, LINEAR, SHAPE, 5, fractional_timesteps=None), TypeError,
     "fractional_timesteps"),
    (lambda: S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, 5, eta=-1.0), ValueError, "eta"),
    (lambda: S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, 5, steps_offset=1), ValueError, "steps_offset"),
    (lambda: S.spaced_timesteps(T, 5, "leading", 900), ValueError, "steps_offset"),
    (lambda: S.spaced_timesteps(T, 5, "leading", 1.0), TypeError, "steps_offset"),
    (lambda: S.karras_sigmas(5, 0.0, 10.0), ValueError, "sigma_min"),
    (lambda: S.karras_sigmas(5, 2.0, 1.0), ValueError, "sigma_max"),
    (lambda: S.karras_sigmas(5, 0.1, float("nan")), ValueError, "sigma_max"),
    (lambda: S.karras_sigmas(True, 0.1, 1.0), TypeError, "num_steps"),
    (lambda: S.rescale_zero_terminal_snr(np.array([0.1])), ValueError, "betas"),
    (lambda: S.rescale_zero_terminal_snr(np.array([0.1, 1.0])), ValueError, "betas"),
    (lambda: S.zero_terminal_snr_schedule("linear"), TypeError, "betas"),
    (lambda: S.min_snr_weight(LINEAR, 1000), ValueError, "t"),
    (lambda: S.min_snr_weight(LINEAR, 1.5), TypeError, "t"),
    (lambda: S.min_snr_weight(LINEAR, 3, gamma=0.0), ValueError, "gamma"),
    (lambda: S.min_snr_weight(LINEAR, 3, prediction="noise"), ValueError, "prediction"),
    (lambda: S.min_snr_loss(KEY, jax_model, LINEAR, jnp.ones((2, 2)), gamma="5"), TypeError, "gamma"),
    (lambda: S.min_snr_loss(KEY, jax_model, LINEAR, jnp.ones(()), "v"), ValueError, "x0"),
])
def test_bad_inputs_are_clear_errors_naming_the_argument(call, exc, arg):
    with pytest.raises(exc, match=f"`{arg}`" if not arg.endswith(")") else arg.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_samplers_run_under_jit_with_traced_schedules_and_give_finite_gradients():
    def loss(scale):
        sched = jax.tree.map(lambda a: a, LINEAR)
        x = S.dpmpp_2m_sample(KEY, lambda x, t: scale * jax_model(x, t), sched, SHAPE, 5)
        y = S.euler_sample(KEY, lambda x, t: scale * jax_model(x, t), sched, SHAPE, 5, "v")
        return jnp.sum(x**2) + jnp.sum(y**2)

    value, g = jax.jit(jax.value_and_grad(loss))(1.0)
    assert np.isfinite(float(value)) and np.isfinite(float(g)) and float(g) != 0.0
    sampled = jax.jit(lambda s: S.heun_sample(KEY, jax_model, s, SHAPE, 3))(COSINE)
    assert np.all(np.isfinite(np.asarray(sampled)))


def test_docstring_examples():
    import doctest

    # the functions are genjax.diffusion's (their __module__), so testmod(genjax._samplers) finds none of them;
    # tests/test_math_modules.py runs them as genjax.diffusion's, this runs them in genjax._samplers's namespace
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for name in S.PUBLIC:
        assert getattr(df, name) is getattr(S, name) and getattr(S, name).__module__ == "genjax.diffusion"
        for test in finder.find(getattr(S, name), name, globs=dict(vars(S))):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 12, result


# ------------------------------------------------------------------------------ live diffusers

HAVE_DIFFUSERS = importlib.util.find_spec("diffusers") is not None and importlib.util.find_spec("torch") is not None
_skip = pytest.mark.skipif(not HAVE_DIFFUSERS, reason="diffusers and torch are not installed (dev-only check)")
_quiet = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 on torch's __array__, inside diffusers


def live(fn):
    return _skip(_quiet(fn))


def _torch(x):
    import torch

    return torch.tensor(np.asarray(x, np.float32))


def _torch_model(x, t):
    import torch

    return torch.tensor(np_model(x.double().numpy(), np.broadcast_to(np.asarray(t, np.float64), (x.shape[0],))),
                        dtype=torch.float32)


_PRED = {"epsilon": "epsilon", "x0": "sample", "v": "v_prediction"}


@live
@pytest.mark.parametrize("n,spacing,algorithm,prediction", [
    (7, "linspace", a, p) for a in ("dpmsolver++", "sde-dpmsolver++") for p in ("epsilon", "x0", "v")] + [
    (n, sp, a, "epsilon") for n, sp in ((2, "linspace"), (20, "linspace"), (6, "leading"), (6, "trailing"))
    for a in ("dpmsolver++", "sde-dpmsolver++")])
def test_live_diffusers_dpm_solver_multistep(n, spacing, algorithm, prediction):
    from diffusers import DPMSolverMultistepScheduler

    sch = DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=np.asarray(LINEAR.betas, np.float64),
                                      solver_order=2, prediction_type=_PRED[prediction], algorithm_type=algorithm,
                                      timestep_spacing=spacing)
    sch.set_timesteps(n)
    np.testing.assert_array_equal(sch.timesteps.numpy(), S._dpm_timesteps(T, n, spacing))
    x = _torch(start_noise())
    for i, t in enumerate(sch.timesteps):
        x = sch.step(_torch_model(x, int(t)), t, x, variance_noise=_torch(step_noise(i))).prev_sample
    got = S.dpmpp_2m_sample(KEY, jax_model, LINEAR, SHAPE, n, prediction, sde=algorithm != "dpmsolver++",
                            spacing=spacing)
    _close(got, x.numpy(), rtol=2e-3, atol=2e-3)


@live
@pytest.mark.parametrize("method,n,prediction", [
    (m, 6, p) for m in ("euler", "heun") for p in ("epsilon", "x0", "v")] + [(m, 15, "epsilon") for m in ("euler", "heun")])
def test_live_diffusers_euler_and_heun_karras(method, n, prediction):
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    cls = EulerDiscreteScheduler if method == "euler" else HeunDiscreteScheduler
    sch = cls(num_train_timesteps=T, trained_betas=np.asarray(LINEAR.betas, np.float64), use_karras_sigmas=True,
              timestep_spacing="linspace", prediction_type=_PRED[prediction])
    sch.set_timesteps(n)
    t_ref, s_ref = S._karras_ladder(LINEAR, n, 7.0, fractional=True)
    _close(np.unique(sch.sigmas.numpy())[::-1], s_ref, rtol=1e-4, atol=1e-6)
    _close(np.unique(sch.timesteps.numpy())[::-1], t_ref, rtol=1e-4, atol=2e-3)
    x = _torch(start_noise()) * sch.init_noise_sigma
    for t in sch.timesteps:
        out = _torch_model(sch.scale_model_input(x, t), float(t))
        x = sch.step(out, t, x).prev_sample
    fn = S.euler_sample if method == "euler" else S.heun_sample
    got = fn(KEY, jax_model, LINEAR, SHAPE, n, prediction, fractional_timesteps=True)
    _close(got, x.numpy(), rtol=2e-3, atol=2e-3)


@live
@pytest.mark.parametrize("spacing,n,prediction", [
    (sp, n, "epsilon") for sp, n in (("leading", 10), ("leading", 7), ("trailing", 10), ("trailing", 7),
                                     ("linspace", 10))] + [
    (sp, n, p) for sp, n in (("leading", 10), ("trailing", 7)) for p in ("x0", "v")])
def test_live_diffusers_ddim_spacings(spacing, n, prediction):
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=T, trained_betas=np.asarray(LINEAR.betas, np.float64),
                        clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing=spacing,
                        prediction_type=_PRED[prediction])
    sch.set_timesteps(n)
    np.testing.assert_array_equal(sch.timesteps.numpy(), S.spaced_timesteps(T, n, spacing))
    x = _torch(start_noise())
    for t in sch.timesteps:
        x = sch.step(_torch_model(x, int(t)), t, x, eta=0.0).prev_sample
    got = np.asarray(S.ddim_spaced_sample(KEY, jax_model, LINEAR, SHAPE, n, prediction, spacing=spacing))
    ts = S.spaced_timesteps(T, n, spacing)
    agrees = np.all(ts[1:] == ts[:-1] - T // n) and ts[-1] - T // n < 0
    if agrees:  # leading; trailing with n | T
        _close(got, x.numpy(), rtol=2e-3, atol=2e-3)
    else:  # diffusers' prev_timestep = t - T // n is off the ladder (issues #9261, #11347, #12633)
        assert np.max(np.abs(got - x.numpy())) > 1e-3
        fixed = np_ddim_sample(_abar(LINEAR), n, start_noise(), np_model, prediction, spacing, follow_ladder=True)
        _close(got, fixed, rtol=1e-3, atol=1e-3)


@live
def test_live_diffusers_zero_snr_rescaling_and_ddim_epsilon_is_not_finite():
    import torch
    from diffusers import DDIMScheduler
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    betas = df.linear_beta_schedule(T)
    ref = rescale_zero_terminal_snr(torch.tensor(betas, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(S.rescale_zero_terminal_snr(betas), ref, rtol=1e-10, atol=1e-14)
    sch = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", rescale_betas_zero_snr=True,
                        timestep_spacing="trailing", clip_sample=False, prediction_type="epsilon")
    _close(S.zero_terminal_snr_schedule(betas).alphas_cumprod, sch.alphas_cumprod.numpy(), rtol=1e-4, atol=1e-6)
    sch.set_timesteps(10)
    x = _torch(start_noise())
    x = sch.step(_torch_model(x, int(sch.timesteps[0])), sch.timesteps[0], x).prev_sample
    assert not torch.all(torch.isfinite(x))  # issue #3851: inf at the first step
    got = S.ddim_spaced_sample(KEY, jax_model, S.zero_terminal_snr_schedule(betas), SHAPE, 10)
    assert np.all(np.isfinite(np.asarray(got)))


@live
def test_live_diffusers_karras_sigma_min_final_step_has_zero_length():
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    for cls in (DPMSolverMultistepScheduler, EulerDiscreteScheduler):
        sch = cls(num_train_timesteps=T, trained_betas=np.asarray(LINEAR.betas, np.float64), use_karras_sigmas=True,
                  final_sigmas_type="sigma_min")
        sch.set_timesteps(8)
        s = sch.sigmas.numpy()
        assert s[-1] == pytest.approx(s[-2], rel=1e-6)  # diffusers: the last step goes nowhere
    _, s = S._karras_ladder(LINEAR, 8, 7.0, fractional=True)
    assert float(s[-1]) == 0.0 and float(s[-2]) == pytest.approx(float(S._train_sigmas(LINEAR)[0]), rel=1e-5)


@live
def test_live_diffusers_compute_snr_and_min_snr_weights():
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    sch = DDPMScheduler(num_train_timesteps=T, trained_betas=np.asarray(LINEAR.betas, np.float64))
    t = torch.arange(0, T, 37)
    snr = compute_snr(sch, t).double().numpy()
    _close(S.min_snr_weight(LINEAR, jnp.asarray(t.numpy(), jnp.int32), 5.0, "x0"), np.minimum(snr, 5.0),
           rtol=1e-3, atol=1e-6)
    _close(S.min_snr_weight(LINEAR, jnp.asarray(t.numpy(), jnp.int32), 5.0, "v"), np.minimum(snr, 5.0) / (snr + 1),
           rtol=1e-3, atol=1e-6)


def test_dpmpp_clip_x0_clips_every_data_prediction():
    """`clip_x0`: a model whose data prediction is 5 everywhere (outside [-1, 1]) ends exactly at
    the clipped value, since DPM-Solver++'s last step returns x0_hat (Lu et al. 2022, final step
    to sigma = 0); without clipping it ends at 5. None is the unclipped sampler, bit for bit."""
    from genjax.diffusion import dpmpp_2m_sample, linear_beta_schedule, make_schedule

    s = make_schedule(linear_beta_schedule(50))
    five = lambda x, t: jnp.full_like(x, 5.0)  # noqa: E731
    key = jax.random.key(3)
    clipped = dpmpp_2m_sample(key, five, s, (4, 3), 7, "x0", clip_x0=(-1.0, 1.0))
    np.testing.assert_array_equal(clipped, np.ones((4, 3), np.float32))
    np.testing.assert_allclose(dpmpp_2m_sample(key, five, s, (4, 3), 7, "x0"), 5.0, rtol=1e-6)
    eps = lambda x, t: 0.1 * x  # noqa: E731
    np.testing.assert_array_equal(dpmpp_2m_sample(key, eps, s, (4, 3), 7, clip_x0=None),
                                  dpmpp_2m_sample(key, eps, s, (4, 3), 7))
    with pytest.raises(ValueError, match="clip_x0"):
        dpmpp_2m_sample(key, eps, s, (4, 3), 7, clip_x0=(1.0, -1.0))


@pytest.mark.parametrize("sampler", ["euler_sample", "heun_sample"])
def test_karras_samplers_clip_x0_clip_every_data_prediction(sampler):
    """`clip_x0` in Euler and Heun: their last step (to sigma = 0) returns the data prediction D
    (Karras et al. 2022, Algorithm 1), so a model predicting x0 = 5 everywhere ends exactly at
    the clipped 1, and at 5 without clipping; None is the unclipped sampler, bit for bit."""
    from genjax import diffusion
    from genjax.diffusion import linear_beta_schedule, make_schedule

    fn = getattr(diffusion, sampler)
    s = make_schedule(linear_beta_schedule(50))
    five = lambda x, t: jnp.full_like(x, 5.0)  # noqa: E731
    key = jax.random.key(3)
    np.testing.assert_array_equal(fn(key, five, s, (4, 3), 4, "x0", clip_x0=(-1.0, 1.0)), np.ones((4, 3), np.float32))
    np.testing.assert_allclose(fn(key, five, s, (4, 3), 4, "x0"), 5.0, rtol=1e-5)
    eps = lambda x, t: 0.1 * x  # noqa: E731
    np.testing.assert_array_equal(fn(key, eps, s, (4, 3), 4, clip_x0=None), fn(key, eps, s, (4, 3), 4))
    with pytest.raises(ValueError, match="clip_x0"):
        fn(key, eps, s, (4, 3), 4, clip_x0=(1.0, -1.0))
