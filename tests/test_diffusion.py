"""Tests for genjax.diffusion.

Reference values and where they come from:

* diffusers: its schedulers are transcribed below into NumPy, line by line, from
  huggingface/diffusers `src/diffusers/schedulers/scheduling_ddpm.py` (`betas_for_alpha_bar`,
  `DDPMScheduler.__init__`, `_get_variance`, `step`, `add_noise`) and `scheduling_ddim.py`
  (`DDIMScheduler.__init__`, `set_timesteps`, `_get_variance`, `step`). diffusers is not a
  dependency (it needs torch), so the transcriptions keep its float32 arithmetic
  (`torch.float32` betas and cumulative products) and are compared at float32 tolerances. Where
  diffusers and torch are installed, `test_live_diffusers_*` compares with diffusers itself
  (checked with diffusers 0.42.1, torch 2.13.0).
* hand-derived numbers, each with its derivation in a comment;
* closed forms (Gaussian conditioning / Bayes' rule) and numerical integration in float64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genjax import diffusion as df

T = 1000
LINEAR = df.make_schedule(df.linear_beta_schedule(T))
COSINE = df.make_schedule(df.cosine_beta_schedule(T))


# ------------------------------------------------------------------------------ diffusers, in NumPy


def diffusers_betas(schedule: str, num_train_timesteps: int = 1000, beta_start=1e-4, beta_end=0.02):
    """DDPMScheduler.__init__ / DDIMScheduler.__init__ (scheduling_ddpm.py, scheduling_ddim.py)."""
    if schedule == "linear":
        # self.betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        return np.linspace(beta_start, beta_end, num_train_timesteps).astype(np.float32)
    # "squaredcos_cap_v2": betas_for_alpha_bar(num_train_timesteps), max_beta=0.999

    def alpha_bar(time_step):
        return math.cos((time_step + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = []
    for i in range(num_train_timesteps):
        t1 = i / num_train_timesteps
        t2 = (i + 1) / num_train_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999))
    return np.asarray(betas, np.float32)


class DiffusersDDPM:
    """scheduling_ddpm.py: DDPMScheduler (prediction_type epsilon), in float32 NumPy."""

    def __init__(self, schedule="linear", variance_type="fixed_small", clip_sample=False):
        self.betas = diffusers_betas(schedule)
        self.alphas = np.float32(1.0) - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas, dtype=np.float32)
        self.one = np.float32(1.0)
        self.variance_type, self.clip_sample = variance_type, clip_sample

    def add_noise(self, original_samples, noise, timesteps):
        sqrt_alpha_prod = (self.alphas_cumprod[timesteps] ** 0.5).reshape(-1, *[1] * (original_samples.ndim - 1))
        sqrt_one_minus = ((1 - self.alphas_cumprod[timesteps]) ** 0.5).reshape(-1, *[1] * (original_samples.ndim - 1))
        return sqrt_alpha_prod * original_samples + sqrt_one_minus * noise

    def _get_variance(self, t):
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[t - 1] if t > 0 else self.one
        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * self.betas[t]
        if self.variance_type == "fixed_small":
            return max(variance, 1e-20)
        return self.betas[t]  # "fixed_large"

    def step(self, model_output, t, sample, noise):
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[t - 1] if t > 0 else self.one
        beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
        pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        if self.clip_sample:
            pred_original_sample = np.clip(pred_original_sample, -1, 1)
        pred_original_sample_coeff = (alpha_prod_t_prev ** 0.5 * self.betas[t]) / beta_prod_t
        current_sample_coeff = self.alphas[t] ** 0.5 * beta_prod_t_prev / beta_prod_t
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample
        variance = 0
        if t > 0:
            variance = (self._get_variance(t) ** 0.5) * noise
        return pred_prev_sample + variance


class DiffusersDDIM:
    """scheduling_ddim.py: DDIMScheduler (epsilon, set_alpha_to_one=True, steps_offset=0)."""

    def __init__(self, schedule="linear", clip_sample=False):
        self.betas = diffusers_betas(schedule)
        self.alphas_cumprod = np.cumprod(np.float32(1.0) - self.betas, dtype=np.float32)
        self.final_alpha_cumprod = np.float32(1.0)
        self.num_train_timesteps = len(self.betas)
        self.clip_sample = clip_sample  # clip_sample_range = 1.0

    def set_timesteps(self, num_inference_steps):
        self.num_inference_steps = num_inference_steps
        step_ratio = self.num_train_timesteps // self.num_inference_steps
        self.timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.int64)

    def _get_variance(self, timestep, prev_timestep):
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t, beta_prod_t_prev = 1 - alpha_prod_t, 1 - alpha_prod_t_prev
        return (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)

    def step(self, model_output, timestep, sample, eta, variance_noise, use_clipped_model_output=False):
        prev_timestep = timestep - self.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        if self.clip_sample:
            pred_original_sample = np.clip(pred_original_sample, -1, 1)
        variance = self._get_variance(timestep, prev_timestep)
        std_dev_t = eta * variance ** 0.5
        if use_clipped_model_output:
            model_output = (sample - alpha_prod_t ** 0.5 * pred_original_sample) / beta_prod_t ** 0.5
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t ** 2) ** 0.5 * model_output
        prev_sample = alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction
        if eta > 0:
            prev_sample = prev_sample + std_dev_t * variance_noise
        return prev_sample


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("name,fn", [("linear", df.linear_beta_schedule),
                                     ("squaredcos_cap_v2", df.cosine_beta_schedule)])
def test_betas_and_cumulative_alphas_match_diffusers(name, fn):
    ref_betas = diffusers_betas(name)
    sched = df.make_schedule(fn(T))
    np.testing.assert_allclose(sched.betas, ref_betas, rtol=1e-6)
    ref_cumprod = np.cumprod(np.float32(1.0) - ref_betas, dtype=np.float32)
    # float32 cumprod over 1000 factors (diffusers) vs float64 then rounded (here): ~1e-5 apart.
    np.testing.assert_allclose(sched.alphas_cumprod, ref_cumprod, rtol=2e-4)


def test_hand_derived_schedule_values():
    # Linear: abar_0 = 1 - beta_0 = 0.9999 exactly.
    np.testing.assert_allclose(LINEAR.alphas_cumprod[0], 0.9999, rtol=1e-7)
    # Linear, T = 1000: log abar_999 = sum_t log(1 - beta_t) = -(S1 + S2 / 2 + S3 / 3 + ...) with
    # S1 = sum beta = T (1e-4 + 0.02) / 2 = 10.05, S2 = sum beta^2 ~ T (a^2 + ab + b^2) / 3 = 0.1340
    # and S3 ~ T (a + b)(a^2 + b^2) / 4 ~ 0.0020: log abar ~ -10.05 - 0.0670 - 0.0007 = -10.1177,
    # abar_999 ~ 4.036e-5 (the "~4e-5" of Ho et al.'s schedule: x_T is almost pure noise).
    np.testing.assert_allclose(LINEAR.alphas_cumprod[999], 4.036e-5, rtol=1e-3)
    # Linear: tilde-beta_1 = beta_1 (1 - abar_0) / (1 - abar_1) with beta_1 = 1e-4 + 0.0199 / 999
    # = 1.19920e-4, abar_1 = 0.9999 (1 - 1.19920e-4), so 1 - abar_1 = 2.19908e-4:
    # tilde-beta_1 = 1.19920e-4 * 1e-4 / 2.19908e-4 = 5.4532e-5.
    np.testing.assert_allclose(LINEAR.posterior_variance[1], 5.4532e-5, rtol=1e-4)
    assert float(LINEAR.posterior_variance[0]) == 0.0
    np.testing.assert_allclose(LINEAR.posterior_log_variance_clipped[0], math.log(5.4532e-5), rtol=1e-4)
    # Cosine: before clipping the betas telescope, abar_t = f((t + 1) / T) / f(0) with
    # f(u) = cos^2(pi/2 (u + s) / (1 + s)); at t = 499: f(0.5) = cos^2(0.50397 pi/2) = 0.49377,
    # f(0) = cos^2(0.0124666) = 0.99984, ratio 0.49384.
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    np.testing.assert_allclose(COSINE.alphas_cumprod[499], f(0.5) / f(0.0), rtol=1e-5)
    np.testing.assert_allclose(COSINE.alphas_cumprod[499], 0.49384, rtol=1e-4)
    # Cosine: f(1) = 0, so beta_999 = 1 is clipped to 0.999 and abar_999 = f(0.999) / f(0) * 0.001;
    # f(0.999) = sin^2(pi/2 * 0.001 / 1.008)^2 = (1.5583e-3)^2 = 2.4283e-6, so abar_999 = 2.429e-9.
    np.testing.assert_allclose(COSINE.betas[999], 0.999, rtol=1e-7)
    np.testing.assert_allclose(COSINE.alphas_cumprod[999], 2.429e-9, rtol=1e-3)
    assert float(COSINE.betas[998]) < 0.999


def test_schedule_fields_are_consistent_and_a_pytree():
    s = LINEAR
    np.testing.assert_allclose(s.alphas, 1 - np.asarray(s.betas), rtol=1e-6)
    np.testing.assert_allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    assert float(s.alphas_cumprod_prev[0]) == 1.0
    np.testing.assert_allclose(s.sqrt_recip_alphas_cumprod * s.sqrt_alphas_cumprod, 1.0, rtol=1e-6)
    assert s.num_timesteps == T
    leaves = jax.tree.leaves(s)
    assert len(leaves) == 12 and all(x.dtype == jnp.float32 and x.shape == (T,) for x in leaves)
    # usable as an argument of jit and vmap
    doubled = jax.jit(lambda sc: jax.tree.map(lambda x: 2 * x, sc))(s)
    assert isinstance(doubled, df.Schedule) and doubled.num_timesteps == T


def test_schedule_validation():
    with pytest.raises(ValueError, match="num_timesteps"):
        df.linear_beta_schedule(0)
    with pytest.raises(TypeError, match="num_timesteps"):
        df.cosine_beta_schedule(10.0)
    with pytest.raises(ValueError, match="beta_end"):
        df.linear_beta_schedule(10, beta_end=1.5)
    with pytest.raises(ValueError, match="max_beta"):
        df.cosine_beta_schedule(10, max_beta=1.0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        df.make_schedule([0.1, 0.0])
    with pytest.raises(ValueError, match=r"1-D array \[T\]"):
        df.make_schedule(np.full((2, 3), 0.1))
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(df.make_schedule)(jnp.full((3,), 0.1))


# ------------------------------------------------------------------------------ forward process


def test_q_sample_is_diffusers_add_noise():
    x0, noise = _normal(0, (5, 3, 4)), _normal(1, (5, 3, 4))
    t = np.array([0, 1, 500, 998, 999])
    for name, sched in (("linear", LINEAR), ("squaredcos_cap_v2", COSINE)):
        ref = DiffusersDDPM(name).add_noise(x0, noise, t)
        np.testing.assert_allclose(df.q_sample(sched, x0, t, noise), ref, rtol=1e-4, atol=1e-5)


def test_iterated_q_step_matches_q_sample_in_mean_and_variance():
    # x_t after t + 1 forward steps is linear in x_0 and the t + 1 noises: its mean is the
    # coefficient of x_0 and its variance the sum of the squared noise coefficients (exact,
    # by autodiff); q(x_t | x_0) says sqrt(abar_t) and 1 - abar_t.
    for sched in (LINEAR, COSINE):
        for t in (0, 9, 299, 999):
            def run(x0, noises):
                def body(x, tn):
                    return df.q_step(sched, x, tn[0], tn[1]), None
                return jax.lax.scan(body, x0, (jnp.arange(t + 1), noises))[0][0, 0]

            x0, noises = jnp.zeros((1, 1)), jnp.zeros((t + 1, 1, 1))
            coef_x0, coef_noise = jax.grad(run, argnums=(0, 1))(x0, noises)
            np.testing.assert_allclose(coef_x0[0, 0], sched.sqrt_alphas_cumprod[t], rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(jnp.sum(coef_noise**2), 1 - sched.alphas_cumprod[t], rtol=1e-4, atol=1e-7)
    # and by Monte Carlo: 100,000 chains of 300 steps from x_0 = 2.
    n, t = 100_000, 299
    keys = jax.random.split(jax.random.key(0), t + 1)
    x = jnp.full((n,), 2.0)
    x = jax.lax.fori_loop(0, t + 1, lambda s, x: df.q_step(LINEAR, x, s, jax.random.normal(keys[s], (n,))), x)
    abar = float(LINEAR.alphas_cumprod[t])
    np.testing.assert_allclose(np.mean(x), 2 * math.sqrt(abar), atol=4 * math.sqrt((1 - abar) / n))
    np.testing.assert_allclose(np.var(x), 1 - abar, rtol=0.02)  # 5 standard errors: sqrt(2/n) = 0.45%


def test_posterior_is_bayes_rule_for_scalar_gaussians():
    # prior x_{t-1} | x_0 ~ N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}); likelihood
    # x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t). Bayes' rule for Gaussians: precision adds,
    # 1/var = 1/(1 - abar_{t-1}) + alpha_t / beta_t, mean = var (sqrt(abar_{t-1}) x_0 / (1 - abar_{t-1})
    # + sqrt(alpha_t) x_t / beta_t); and independently by integrating the unnormalised posterior on a grid.
    x0, xt = np.array([[0.7]], np.float32), np.array([[-0.4]], np.float32)
    for sched in (LINEAR, COSINE):
        b = np.asarray(sched.betas, np.float64)
        abar = np.cumprod(1 - b)
        for t in (1, 10, 500, 998):
            mean, var, log_var = df.q_posterior(sched, x0, xt, t)
            prior_m, prior_v = math.sqrt(abar[t - 1]) * 0.7, 1 - abar[t - 1]
            post_v = 1 / (1 / prior_v + (1 - b[t]) / b[t])
            post_m = post_v * (prior_m / prior_v + math.sqrt(1 - b[t]) * -0.4 / b[t])
            np.testing.assert_allclose(mean[0, 0], post_m, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(var[0, 0], post_v, rtol=1e-4)
            np.testing.assert_allclose(log_var[0, 0], math.log(post_v), rtol=1e-4)
            sd = math.sqrt(post_v)
            grid = np.linspace(post_m - 12 * sd, post_m + 12 * sd, 200_001)
            logp = -((grid - prior_m) ** 2) / (2 * prior_v) - (-0.4 - math.sqrt(1 - b[t]) * grid) ** 2 / (2 * b[t])
            w = np.exp(logp - logp.max())
            w /= w.sum()
            num_mean = np.sum(w * grid)
            np.testing.assert_allclose(mean[0, 0], num_mean, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(var[0, 0], np.sum(w * (grid - num_mean) ** 2), rtol=1e-3)
    # t = 0: x_{-1} is x_0 itself.
    mean, var, _ = df.q_posterior(LINEAR, x0, xt, 0)
    np.testing.assert_allclose(mean, x0, rtol=1e-6)
    assert float(var[0, 0]) == 0.0


def test_per_example_timesteps_and_the_inverses():
    x0, noise = _normal(2, (4, 6)), _normal(3, (4, 6))
    t = jnp.array([0, 10, 500, 999])
    xt = df.q_sample(COSINE, x0, t, noise)
    for i in range(4):  # one entry per example is the same as a scalar t per example
        np.testing.assert_allclose(xt[i], df.q_sample(COSINE, x0[i:i + 1], int(t[i]), noise[i:i + 1])[0], rtol=1e-6)
    np.testing.assert_allclose(df.predict_x0(COSINE, xt, t, noise), x0, rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(df.predict_eps(COSINE, xt, t, x0), noise, rtol=1e-3, atol=1e-3)
    # v-prediction: x_0 = sqrt(abar) x_t - sqrt(1 - abar) v (Salimans & Ho 2022, section 4)
    v = df.v_target(COSINE, x0, t, noise)
    ab = np.asarray(COSINE.alphas_cumprod)[np.asarray(t)][:, None]
    np.testing.assert_allclose(np.sqrt(ab) * xt - np.sqrt(1 - ab) * v, x0, rtol=1e-4, atol=1e-4)


def test_shape_and_type_errors_name_the_argument():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="`x0` and `noise` must have the same shape"):
        df.q_sample(LINEAR, x, 3, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"`t` must be a scalar or have shape \[B\] = \(4,\)"):
        df.q_sample(LINEAR, x, jnp.zeros((3,), jnp.int32), x)
    with pytest.raises(TypeError, match="`t` must have an integer dtype"):
        df.q_sample(LINEAR, x, 1.5, x)
    with pytest.raises(TypeError, match="`schedule` must be a genjax.diffusion.Schedule"):
        df.q_sample(np.ones(3), x, 1, x)
    with pytest.raises(ValueError, match="`variance` must be one of"):
        df.ddpm_step(jax.random.key(0), LINEAR, x, x, 1, variance="learned")
    with pytest.raises(TypeError, match="`key` must be a PRNG key .* when `eta` > 0"):
        df.ddim_step(LINEAR, x, x, 10, 5, eta=0.5)
    with pytest.raises(ValueError, match=r"`eta` must be a finite number in \[0, inf\)"):
        df.ddim_step(LINEAR, x, x, 10, 5, eta=-0.5, key=jax.random.key(0))
    # eta > 1 (more noise than DDPM's) is allowed: finite, the direction term clamped at 0
    assert np.all(np.isfinite(df.ddim_step(LINEAR, x, x, 10, 5, eta=1.5, key=jax.random.key(0))))
    with pytest.raises(ValueError, match="`num_steps` must be at most"):
        df.ddim_timesteps(10, 11)
    with pytest.raises(ValueError, match="the denoiser returned shape"):
        df.ddpm_loss(jax.random.key(0), lambda x, t: x[:, :1], LINEAR, x)
    with pytest.raises(ValueError, match="`prediction`"):
        df.ddpm_loss(jax.random.key(0), lambda x, t: x, LINEAR, x, prediction="score")
    with pytest.raises(ValueError, match="`clip_x0`"):
        df.sample(jax.random.key(0), _zero_eps, LINEAR, (2, 2), clip_x0=(1.0, -1.0))


# ------------------------------------------------------------------------------ the loss


def test_ddpm_loss_is_zero_for_the_oracle_of_a_point_mass():
    # Data = the constant c: then eps = (x_t - sqrt(abar_t) c) / sqrt(1 - abar_t) exactly, so the
    # oracle has zero loss; x0- and v-prediction oracles likewise.
    c = jnp.full((64, 3), 0.5)
    eps_oracle = lambda x, t: df.predict_eps(LINEAR, x, t, c)
    loss = df.ddpm_loss(jax.random.key(1), eps_oracle, LINEAR, c)
    assert loss.shape == (64,)
    np.testing.assert_allclose(loss, 0.0, atol=1e-4)
    np.testing.assert_allclose(df.ddpm_loss(jax.random.key(1), lambda x, t: c, LINEAR, c, "x0"), 0.0, atol=1e-8)
    v_oracle = lambda x, t: df.v_target(LINEAR, c, t, df.predict_eps(LINEAR, x, t, c))
    np.testing.assert_allclose(df.ddpm_loss(jax.random.key(1), v_oracle, LINEAR, c, "v"), 0.0, atol=1e-4)
    # The zero predictor's loss is E[eps^2] = 1 per coordinate.
    zero = df.ddpm_loss(jax.random.key(2), _zero_eps, LINEAR, jnp.zeros((4096, 8)))
    np.testing.assert_allclose(jnp.mean(zero), 1.0, atol=0.02)
    # A batch of zero examples is allowed.
    assert df.ddpm_loss(jax.random.key(0), _zero_eps, LINEAR, jnp.zeros((0, 2))).shape == (0,)


def test_ddpm_loss_gradients():
    x0 = jnp.asarray(_normal(4, (8, 2)))
    key = jax.random.key(3)

    def loss(w, b):
        eps_fn = lambda x, t: w * x + b * (t[:, None].astype(jnp.float32) / T)
        return jnp.mean(df.ddpm_loss(key, eps_fn, COSINE, x0))

    check_grads(loss, (jnp.float32(0.3), jnp.float32(-0.2)), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    grads = jax.grad(loss, (0, 1))(jnp.float32(0.3), jnp.float32(-0.2))
    assert all(np.isfinite(g) for g in grads)
    # to_eps_fn inverts the parameterisations used by the loss
    xt, t = jnp.asarray(_normal(5, (8, 2))), jnp.arange(8) * 120
    x0_model = lambda x, t: x0
    eps = df.to_eps_fn(x0_model, COSINE, "x0")(xt, t)
    np.testing.assert_allclose(df.predict_x0(COSINE, xt, t, eps), x0, rtol=1e-3, atol=1e-3)
    v = df.v_target(COSINE, x0, t, df.predict_eps(COSINE, xt, t, x0))
    np.testing.assert_allclose(df.to_eps_fn(lambda x, t: v, COSINE, "v")(xt, t), df.predict_eps(COSINE, xt, t, x0),
                               rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------ reverse steps


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_step_matches_diffusers(variance, clip):
    ref = DiffusersDDPM("linear", variance_type=variance, clip_sample=clip)
    xt, eps = _normal(6, (3, 4, 4, 1)), _normal(7, (3, 4, 4, 1))
    for t in (999, 500, 1, 0):
        key = jax.random.key(t)
        z = np.asarray(jax.random.normal(key, xt.shape, jnp.float32))  # the documented noise
        got = df.ddpm_step(key, LINEAR, eps, xt, t, variance, clip_x0=(-1.0, 1.0) if clip else None)
        np.testing.assert_allclose(got, ref.step(eps, t, xt, z), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name,sched", [("linear", LINEAR), ("squaredcos_cap_v2", COSINE)])
def test_ddim_step_and_timesteps_match_diffusers(eta, name, sched):
    ref = DiffusersDDIM(name)
    for n in (10, 30, 50):
        ref.set_timesteps(n)
        np.testing.assert_array_equal(df.ddim_timesteps(T, n), ref.timesteps)
    ref.set_timesteps(50)
    ts = df.ddim_timesteps(T, 50)
    xt, eps = _normal(8, (2, 5)), _normal(9, (2, 5))
    for i in (0, 1, 25, 49):  # the last one ends the chain (t_prev = -1, abar = 1)
        t, t_prev = int(ts[i]), (int(ts[i + 1]) if i + 1 < len(ts) else -1)
        key = jax.random.key(i)
        z = np.asarray(jax.random.normal(key, xt.shape, jnp.float32))
        got = df.ddim_step(sched, eps, xt, t, t_prev, eta, key)
        np.testing.assert_allclose(got, ref.step(eps, t, xt, eta, z), rtol=5e-4, atol=5e-5)
    # clip_sample=True, with and without use_clipped_model_output (x0_hat of 3 * N(0, 1) data
    # is mostly outside [-1, 1] early in the chain)
    ref = DiffusersDDIM(name, clip_sample=True)
    ref.set_timesteps(50)
    for use in (False, True):
        for i in (0, 25, 49):
            t, t_prev = int(ts[i]), (int(ts[i + 1]) if i + 1 < len(ts) else -1)
            key = jax.random.key(i)
            z = np.asarray(jax.random.normal(key, xt.shape, jnp.float32))
            got = df.ddim_step(sched, eps, 3 * xt, t, t_prev, eta, key, clip_x0=(-1.0, 1.0),
                               use_clipped_model_output=use)
            np.testing.assert_allclose(got, ref.step(eps, t, 3 * xt, eta, z, use), rtol=5e-4, atol=5e-5)


def test_ddim_with_eta_one_and_one_step_back_is_the_ddpm_step():
    # sigma_t(eta=1)^2 = (1 - abar_{t-1}) / (1 - abar_t) (1 - alpha_t) = tilde-beta_t (Song et al. eq. 16)
    xt, eps = _normal(10, (3, 2)), _normal(11, (3, 2))
    for t in (1, 100, 999):
        key = jax.random.key(t)
        np.testing.assert_allclose(df.ddim_step(COSINE, eps, xt, t, t - 1, 1.0, key),
                                   df.ddpm_step(key, COSINE, eps, xt, t), rtol=1e-4, atol=1e-5)


def test_ddim_with_eta_zero_is_deterministic():
    xt, eps = _normal(12, (3, 2)), _normal(13, (3, 2))
    a = df.ddim_step(LINEAR, eps, xt, 500, 400)
    b = df.ddim_step(LINEAR, eps, xt, 500, 400, 0.0, jax.random.key(5))
    np.testing.assert_array_equal(a, b)
    # The sampler: the same key gives the same samples, and eta = 0 only uses the start noise.
    s1 = df.ddim_sample(jax.random.key(0), _gauss_eps, LINEAR, (16, 2), 20)
    s2 = df.ddim_sample(jax.random.key(0), _gauss_eps, LINEAR, (16, 2), 20)
    np.testing.assert_array_equal(s1, s2)
    _, traj = df.ddim_sample(jax.random.key(0), _gauss_eps, LINEAR, (16, 2), 20, return_trajectory=True)
    assert traj.shape == (21, 16, 2)
    x_T = jax.random.normal(jax.random.split(jax.random.key(0))[0], (16, 2))
    np.testing.assert_array_equal(traj[0], x_T)
    x = x_T
    ts = df.ddim_timesteps(T, 20)
    for t, t_prev in zip(ts, [*ts[1:], -1]):
        x = df.ddim_step(LINEAR, _gauss_eps(x, jnp.full((16,), t)), x, int(t), int(t_prev))
    np.testing.assert_allclose(s1, x, rtol=1e-5, atol=1e-5)
    s3 = df.ddim_sample(jax.random.key(0), _gauss_eps, LINEAR, (16, 2), 20, eta=1.0)
    assert not np.allclose(s1, s3)


# ------------------------------------------------------------------------------ samplers


MU = jnp.array([1.0, -0.5])
SD = jnp.array([0.5, 0.2])


def _zero_eps(x, t):
    return jnp.zeros_like(x)


def _gauss_eps(x, t, sched=LINEAR):
    """The exact E[eps | x_t] for data x_0 ~ N(MU, diag(SD^2)): x_t ~ N(sqrt(abar) MU,
    abar SD^2 + 1 - abar) and eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar), so by Gaussian
    conditioning E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) MU) / (abar SD^2 + 1 - abar)."""
    ab = sched.alphas_cumprod[t][:, None]
    return jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * MU) / (ab * SD**2 + 1 - ab)


def _cos_gauss_eps(x, t):
    return _gauss_eps(x, t, COSINE)


@pytest.mark.parametrize(
    "sampler",
    [
        lambda k, s, e: df.sample(k, e, s, (20_000, 2)),
        lambda k, s, e: df.sample(k, e, s, (20_000, 2), "fixed_large"),
        lambda k, s, e: df.ddim_sample(k, e, s, (20_000, 2), 1000),
        lambda k, s, e: df.ddim_sample(k, e, s, (20_000, 2), 1000, eta=0.5),
    ],
    ids=["ddpm_small", "ddpm_large", "ddim1000", "ddim1000_eta05"],
)
def test_samplers_with_the_perfect_denoiser_recover_a_gaussian(sampler):
    for sched, eps in ((LINEAR, _gauss_eps), (COSINE, _cos_gauss_eps)):
        x = np.asarray(sampler(jax.random.key(7), sched, eps))
        assert np.all(np.isfinite(x))
        # 20,000 samples: standard errors 0.0035 / 0.0014 (mean) and 0.5% (std); the rest is
        # the samplers' discretisation error (measured: at most 1.6% of the std here).
        np.testing.assert_allclose(x.mean(0), MU, atol=0.015)
        np.testing.assert_allclose(x.std(0), SD, rtol=0.03)


def test_ddim_discretisation_error_shrinks_with_the_number_of_steps():
    # Deterministic DDIM is a first-order discretisation of the probability-flow ODE: with few
    # steps it shrinks a narrow Gaussian (measured std of the 0.2 coordinate: 0.104 with 10 steps,
    # 0.175 with 50, 0.192 with 200, 0.197 with 1000, linear schedule). Large stochastic steps
    # (eta = 1, 100 steps: 0.175) are too narrow as well: their variance ignores Var[x_0 | x_t].
    errors = [abs(float(np.std(df.ddim_sample(jax.random.key(7), _gauss_eps, LINEAR, (20_000, 2), n)[:, 1])) - 0.2)
              for n in (10, 50, 200)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1 * 0.2


def test_sample_compiles_once_and_returns_the_trajectory():
    df.sample(jax.random.key(0), _zero_eps, LINEAR, (4, 3))
    n = df._sample._cache_size()
    x1 = df.sample(jax.random.key(1), _zero_eps, LINEAR, (4, 3))
    x2 = df.sample(jax.random.key(2), _zero_eps, COSINE, (4, 3))
    assert df._sample._cache_size() == n  # new keys and a new schedule: no recompilation
    assert x1.shape == (4, 3) and not np.allclose(x1, x2)
    # The documented pattern for a parametrised denoiser: one compilation for all parameters.
    @jax.jit
    def generate(w, key):
        return df.sample(key, lambda x, t: w * x, LINEAR, (4, 3))

    generate(jnp.float32(0.1), jax.random.key(0))
    generate(jnp.float32(0.2), jax.random.key(1))
    assert generate._cache_size() == 1
    x, traj = df.sample(jax.random.key(1), _zero_eps, LINEAR, (4, 3), return_trajectory=True)
    assert traj.shape == (T + 1, 4, 3)
    np.testing.assert_array_equal(traj[-1], x)
    np.testing.assert_array_equal(x, x1)


def test_extreme_inputs_stay_finite_and_half_precision_is_kept():
    # The cosine schedule's last step has abar = 2.4e-9 (1 / sqrt(abar) = 2e4).
    x = jnp.full((2, 3), 1e4)
    eps = jnp.full((2, 3), -1e4)
    for out in (df.predict_x0(COSINE, x, 999, eps), df.ddim_step(COSINE, eps, x, 999, -1),
                df.ddpm_step(jax.random.key(0), COSINE, eps, x, 999), df.q_posterior(COSINE, x, x, 999)[0]):
        assert np.all(np.isfinite(out))
    g = jax.grad(lambda e: jnp.sum(df.ddim_step(COSINE, e, x, 999, 980, 0.7, jax.random.key(0))))(eps)
    assert np.all(np.isfinite(g))
    for dtype in (jnp.bfloat16, jnp.float16):
        xb = jnp.ones((2, 3), dtype)
        out = df.q_sample(LINEAR, xb, 999, xb)
        assert out.dtype == dtype and np.all(np.isfinite(np.asarray(out, np.float32)))


def test_forward_functions_under_vmap_and_check_grads():
    x0, noise = jnp.asarray(_normal(14, (3, 2))), jnp.asarray(_normal(15, (3, 2)))
    t = jnp.array([5, 50, 500])
    per_example = jax.vmap(lambda x, n, s: df.q_sample(LINEAR, x[None], s, n[None])[0])(x0, noise, t)
    np.testing.assert_allclose(per_example, df.q_sample(LINEAR, x0, t, noise), rtol=1e-6)
    check_grads(lambda x, n: df.q_sample(LINEAR, x, t, n), (x0, noise), order=2, atol=1e-2, rtol=1e-2)
    check_grads(lambda x, e: df.ddim_step(LINEAR, e, x, t, t - 5, 0.3, jax.random.key(0)), (x0, noise),
                order=1, atol=1e-2, rtol=1e-2)


# The doctests, `__all__` and the light import of this module: tests/test_math_modules.py.

# ------------------------------------------------------------------------------ live diffusers
# The NumPy transcriptions above run everywhere. Where diffusers (and torch) happen to be
# installed (`pip install diffusers torch`; neither is a dependency of genjax and CI has neither),
# the same comparisons run against diffusers' own DDPMScheduler and DDIMScheduler, which also
# checks the transcriptions. diffusers draws the DDPM step's noise with `randn_tensor`; the test
# substitutes the documented noise `jax.random.normal(key, shape)` for it.


def _live_diffusers():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers/torch import-time deprecation notices
        diffusers = pytest.importorskip("diffusers")
        torch = pytest.importorskip("torch")
        from diffusers.schedulers import scheduling_ddpm
    return diffusers, torch, scheduling_ddpm


@pytest.mark.parametrize("name,sched", [("linear", LINEAR), ("squaredcos_cap_v2", COSINE)])
def test_live_diffusers_schedules_add_noise_and_steps(name, sched, monkeypatch):
    diffusers, torch, scheduling_ddpm = _live_diffusers()
    x0, xt, eps = _normal(20, (3, 4, 4, 1)), _normal(21, (3, 4, 4, 1)), _normal(22, (3, 4, 4, 1))
    for variance in ("fixed_small", "fixed_large"):
        for clip in (False, True):
            ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name, variance_type=variance,
                                          clip_sample=clip)
            np.testing.assert_allclose(sched.betas, ref.betas.numpy(), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(sched.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=2e-5, atol=1e-9)
            t = np.array([0, 1, 500, 999])
            added = ref.add_noise(torch.from_numpy(x0[:1].repeat(4, 0)), torch.from_numpy(eps[:1].repeat(4, 0)),
                                  torch.from_numpy(t))
            np.testing.assert_allclose(df.q_sample(sched, x0[:1].repeat(4, 0), t, eps[:1].repeat(4, 0)),
                                       added.numpy(), rtol=1e-4, atol=1e-5)
            for step in (999, 500, 1, 0):
                key = jax.random.key(step)
                z = np.array(jax.random.normal(key, xt.shape, jnp.float32))
                monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda *a, **k: torch.from_numpy(z))
                want = ref.step(torch.from_numpy(eps), step, torch.from_numpy(xt)).prev_sample.numpy()
                got = df.ddpm_step(key, sched, eps, xt, step, variance, clip_x0=(-1.0, 1.0) if clip else None)
                np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    for eta in (0.0, 0.5, 1.0):
        for clip, use in ((False, False), (True, False), (True, True)):
            ref = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=name, clip_sample=clip,
                                          set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
            ref.set_timesteps(50)
            ts = df.ddim_timesteps(T, 50)
            np.testing.assert_array_equal(ts, ref.timesteps.numpy())
            for i in (0, 1, 25, 49):
                t, t_prev = int(ts[i]), (int(ts[i + 1]) if i + 1 < len(ts) else -1)
                key = jax.random.key(i)
                z = np.array(jax.random.normal(key, xt.shape, jnp.float32))
                want = ref.step(torch.from_numpy(eps), t, torch.from_numpy(3 * xt), eta=eta,
                                use_clipped_model_output=use, variance_noise=torch.from_numpy(z)).prev_sample.numpy()
                got = df.ddim_step(sched, eps, 3 * xt, t, t_prev, eta, key, clip_x0=(-1.0, 1.0) if clip else None,
                                   use_clipped_model_output=use)
                np.testing.assert_allclose(got, want, rtol=5e-4, atol=5e-5)


# ------------------------------------------------------------------------------ timesteps out of range


def _t_calls(t):
    """Every public function that takes a timestep, called with `t` (a batch of 2 x 3)."""
    x, e, key = jnp.ones((2, 3)), jnp.full((2, 3), 0.3), jax.random.key(0)
    return {
        "q_step": lambda: df.q_step(LINEAR, x, t, e),
        "q_sample": lambda: df.q_sample(LINEAR, x, t, e),
        "q_posterior": lambda: df.q_posterior(LINEAR, x, x, t)[0],
        "predict_x0": lambda: df.predict_x0(LINEAR, x, t, e),
        "predict_eps": lambda: df.predict_eps(LINEAR, x, t, e),
        "v_target": lambda: df.v_target(LINEAR, x, t, e),
        "to_eps_fn[v]": lambda: df.to_eps_fn(lambda x, t: x, LINEAR, "v")(x, t),
        "ddpm_step": lambda: df.ddpm_step(key, LINEAR, e, x, t),
        "ddim_step": lambda: df.ddim_step(LINEAR, e, x, t, -1),
    }


@pytest.mark.parametrize("name", sorted(_t_calls(0)))
@pytest.mark.parametrize("t", [T, -1, np.array([3, T + 5]), jnp.array([-2, 4])], ids=["T", "-1", "[3,T+5]", "[-2,4]"])
def test_concrete_timesteps_out_of_range_are_errors(name, t):
    """t = 1000 acted as 999 (the gather clamps) and t = -1 as 999 (negative indices wrap)."""
    with pytest.raises(ValueError, match=r"`t` must have entries in \[0, 1000\)"):
        _t_calls(t)[name]()


@pytest.mark.parametrize("name", sorted(_t_calls(0)))
def test_traced_timesteps_are_clipped_never_wrapped(name):
    """Under jit t cannot be checked: T + 5 acts as T - 1 and -1 as 0 (jnp.clip), by every function."""
    run = jax.jit(lambda t: _t_calls(t)[name]())
    np.testing.assert_allclose(run(jnp.int32(T + 5)), _t_calls(T - 1)[name](), rtol=1e-6)  # jit: fused rounding
    np.testing.assert_allclose(run(jnp.int32(-1)), _t_calls(0)[name](), rtol=1e-6)


def test_ddim_step_t_prev_must_be_earlier_than_t():
    x, e = jnp.ones((2, 3)), jnp.full((2, 3), 0.3)
    with pytest.raises(ValueError, match="`t` must have entries in"):
        df.ddim_step(LINEAR, e, x, -1, -2)  # was "garbage": abar[-1] is abar_999
    with pytest.raises(ValueError, match=r"`t_prev` must have entries in \[-1, 1000\)"):
        df.ddim_step(LINEAR, e, x, 10, -2)
    for t_prev in (10, 11, jnp.array([5, 10])):
        with pytest.raises(ValueError, match="`t_prev` must be earlier than `t`"):
            df.ddim_step(LINEAR, e, x, 10, t_prev)
    # traced: t_prev clipped into -1 .. t-1, so t_prev = t acts as t - 1 and -5 as -1
    run = jax.jit(lambda t, tp: df.ddim_step(LINEAR, e, x, t, tp))
    np.testing.assert_allclose(run(10, 10), df.ddim_step(LINEAR, e, x, 10, 9), rtol=1e-6)
    np.testing.assert_allclose(run(10, -5), df.ddim_step(LINEAR, e, x, 10, -1), rtol=1e-6)


def test_gradients_stay_finite_where_a_square_root_meets_zero():
    """At the end of the chain (t_prev = -1, abar_prev = 1) sigma and 1 - abar_prev - sigma^2 are 0:
    d sqrt(u)/du = inf there made the gradient in eta NaN; at t = 0 the posterior variance is 0,
    which made the gradient in the schedule NaN. The closed forms: at t_prev = -1 the step is x0_hat
    whatever eta, so d/d eta = 0; the t = 0 DDPM step is the posterior mean, with no variance term."""
    x, e = jnp.ones((2, 3)), jnp.full((2, 3), 0.3)
    g_eta = jax.grad(lambda eta: jnp.sum(df.ddim_step(LINEAR, e, x, 5, -1, eta, jax.random.key(0))))(0.5)
    assert float(g_eta) == 0.0
    g_sched = jax.grad(lambda s: jnp.sum(df.ddpm_step(jax.random.key(0), s, e, x, 0)))(LINEAR)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g_sched))
    assert float(g_sched.posterior_variance[0]) == 0.0


def test_static_numbers_of_the_schedules_and_samplers():
    with pytest.raises(ValueError, match="`beta_start` must be at most `beta_end`"):
        df.linear_beta_schedule(10, beta_start=0.02, beta_end=1e-4)
    for bad in ("0.3", True, None):
        with pytest.raises(TypeError, match="`beta_end`"):
            df.linear_beta_schedule(10, beta_end=bad)
        with pytest.raises(TypeError, match="`eta`"):
            df.ddim_step(LINEAR, jnp.ones((1, 2)), jnp.ones((1, 2)), 5, 4, bad, jax.random.key(0))
    for bad in (float("nan"), -0.1, float("inf")):
        with pytest.raises(ValueError, match="`s` must be a finite number"):
            df.cosine_beta_schedule(10, s=bad)
        with pytest.raises(ValueError, match="`eta` must be a finite number"):
            df.ddim_sample(jax.random.key(0), _zero_eps, LINEAR, (2, 2), 5, eta=bad)
    with pytest.raises(TypeError, match="`clip_x0`"):
        df.sample(jax.random.key(0), _zero_eps, LINEAR, (2, 2), clip_x0=("-1", "1"))  # was float("-1")
    with pytest.raises(TypeError, match="`betas`"):
        df.make_schedule(np.array([0.1 + 0.5j, 0.2]))  # NumPy silently dropped the imaginary part
    with pytest.raises(ValueError, match="not finite"):
        df.make_schedule(np.full(50_000, 0.02))  # abar underflows: 1 / sqrt(abar) = inf
    for shape in ((2.0, 3), (2, True), ()):
        with pytest.raises((TypeError, ValueError), match="`shape`"):
            df.ddim_sample(jax.random.key(0), _zero_eps, LINEAR, shape, 5)
    with pytest.raises(TypeError, match="`key`"):
        df.sample(None, _zero_eps, LINEAR, (2, 2))


def test_concrete_timesteps_are_checked_inside_jit_too():
    """A Python int or NumPy timestep closed over by a jit trace is still concrete: checked."""
    x, e = jnp.ones((2, 3)), jnp.full((2, 3), 0.3)
    with pytest.raises(ValueError, match="`t` must have entries in"):
        jax.jit(lambda x: df.q_sample(LINEAR, x, T, e))(x)
    with pytest.raises(ValueError, match="`t_prev` must be earlier than `t`"):
        jax.jit(lambda x: df.ddim_step(LINEAR, e, x, 10, 10))(x)
    with pytest.raises(ValueError, match="`t_prev` must be earlier than `t`"):
        jax.jit(lambda x: df.ddim_step(LINEAR, e, x, np.array([3, 10]), np.array([2, 10])))(x)
