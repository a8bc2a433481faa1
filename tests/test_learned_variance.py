"""Learned reverse variances (Nichol & Dhariwal 2021): genjax.diffusion's discretized Gaussian
likelihood, learned_log_variance, vlb_term, hybrid_loss, respace and learned_variance_sample.

Reference values: the definitions (Ho et al. 2020, eqs. 5 and 13; Nichol & Dhariwal 2021,
eqs. 15-16) evaluated with scipy.stats.norm in float64, and the closed-form reverse process of
Gaussian data (the true p(x_{t-1} | x_t) is Gaussian, derived in the last test)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from genjax import diffusion as df
from genjax import _learned_variance

SCHED = df.make_schedule(df.linear_beta_schedule(100))
LEVELS = np.linspace(-1.0, 1.0, 256)


@pytest.mark.parametrize("mean, log_scale", [(0.1, np.log(0.3)), (0.0, np.log(1e-4)), (0.5, np.log(1e3)),
                                             (-3.0, np.log(0.01)), (0.2, -20.0), (0.0, 30.0), (1e4, 0.0)])
def test_the_256_levels_have_probabilities_that_sum_to_one_for_any_mean_and_scale(mean, log_scale):
    """The end bins reach to -inf and +inf (Ho et al. eq. 13), so the levels' probabilities
    telescope to 1, also where a bin is far narrower than the scale (the midpoint rule) or far
    wider (a point mass), and the log-probabilities and their gradients stay finite."""
    logp = df.discretized_gaussian_log_likelihood(LEVELS, mean, log_scale)
    assert logp.shape == (256,) and bool(jnp.isfinite(logp).all())
    assert float(jnp.sum(jnp.exp(logp))) == pytest.approx(1.0, abs=3e-5)
    grads = jax.grad(lambda m, s: jnp.sum(df.discretized_gaussian_log_likelihood(LEVELS, m, s)),
                     argnums=(0, 1))(jnp.float32(mean), jnp.float32(log_scale))
    assert all(bool(jnp.isfinite(g)) for g in grads)


def test_discretized_likelihood_equals_normal_cdf_differences_in_float64():
    rng = np.random.default_rng(0)
    x = LEVELS[rng.integers(0, 256, 200)]
    mean = rng.uniform(-1.2, 1.2, 200)
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(3.0), 200))
    h = 1.0 / 255.0
    # log(Phi(b) - Phi(a)) in float64 logs (far tails underflow as plain differences), in the
    # lower tail by logcdf, in the upper by logsf; the end bins reach to -inf / +inf
    a = np.where(x < -1 + h, -np.inf, (x - h - mean) / scale)
    b = np.where(x > 1 - h, np.inf, (x + h - mean) / scale)
    with np.errstate(divide="ignore"):
        low = stats.norm.logcdf(b) + np.log1p(-np.exp(stats.norm.logcdf(a) - stats.norm.logcdf(b)))
        high = stats.norm.logsf(a) + np.log1p(-np.exp(stats.norm.logsf(b) - stats.norm.logsf(a)))
    expected = np.where(a > 0, high, low)
    got = np.asarray(df.discretized_gaussian_log_likelihood(x, mean, np.log(scale)), np.float64)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


def test_narrow_bins_use_the_density_times_the_width_continuously():
    """Below 1e-3 standard deviations per bin the exact difference of CDFs loses every digit in
    float32; there log P = log(pdf(x) * 2h). Both sides of the switch agree to 1e-5."""
    x = np.float32(0.2)
    for log_scale in (np.log(2.0 / 255.0 / 1e-3) - 1e-4, np.log(2.0 / 255.0 / 1e-3) + 1e-4, 20.0):
        got = float(df.discretized_gaussian_log_likelihood(x, 0.1, log_scale))
        expected = stats.norm.logpdf(0.2, 0.1, np.exp(log_scale)) + np.log(2.0 / 255.0)
        assert got == pytest.approx(expected, rel=1e-5)


def test_learned_log_variance_interpolates_between_the_two_fixed_variances():
    t = jnp.array([0, 1, 50, 99])
    x = jnp.zeros((4, 3))
    small = np.asarray(SCHED.posterior_log_variance_clipped)[np.asarray(t)][:, None]
    large = np.log(np.asarray(SCHED.betas))[np.asarray(t)][:, None]
    np.testing.assert_allclose(df.learned_log_variance(SCHED, t, x), np.broadcast_to(small, (4, 3)), rtol=1e-6)
    np.testing.assert_allclose(df.learned_log_variance(SCHED, t, x + 1.0), np.broadcast_to(large, (4, 3)),
                               rtol=1e-6)
    np.testing.assert_allclose(df.learned_log_variance(SCHED, t, x + 0.25), 0.75 * small + 0.25 * large + 0 * x,
                               rtol=1e-6)


def test_vlb_term_is_zero_for_the_true_posterior_and_the_closed_form_kl_otherwise():
    rng = np.random.default_rng(1)
    x0 = jnp.asarray(LEVELS[rng.integers(0, 256, (4, 3, 3, 1))], jnp.float32)
    t = jnp.array([1, 5, 50, 99])
    xt = df.q_sample(SCHED, x0, t, jax.random.normal(jax.random.key(1), x0.shape))
    mean, var, log_var = df.q_posterior(SCHED, x0, xt, t)
    np.testing.assert_allclose(df.vlb_term(SCHED, x0, xt, t, mean, log_var), 0.0, atol=1e-6)
    # a shifted mean at the same variance: KL = delta^2 / (2 var) nats per dimension
    delta = 0.01
    expected = delta**2 / (2.0 * np.asarray(var)[:, 0, 0, 0]) / np.log(2.0)
    np.testing.assert_allclose(df.vlb_term(SCHED, x0, xt, t, mean + delta, log_var), expected, rtol=1e-4)
    # t = 0: the decoder term, -log2 of the discretized likelihood of x0, averaged over the 9 pixels
    t0 = jnp.zeros(4, jnp.int32)
    log_var0 = jnp.full(x0.shape, np.log(0.02))
    nll = -np.asarray(df.discretized_gaussian_log_likelihood(x0, x0 + 0.003, 0.5 * log_var0)).reshape(4, 9)
    np.testing.assert_allclose(df.vlb_term(SCHED, x0, xt, t0, x0 + 0.003, log_var0), nll.mean(1) / np.log(2.0),
                               rtol=1e-5)


def _model(w):
    return lambda x, t: (jnp.sin(x) * w[0], jnp.tanh(x) * w[1] + 0.5)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_hybrid_loss_is_l_simple_at_weight_zero_and_the_bound_trains_only_the_variance(prediction):
    x0 = jnp.asarray(LEVELS[np.random.default_rng(2).integers(0, 256, (8, 4))], jnp.float32)
    key = jax.random.key(3)
    w = jnp.array([1.0, 0.5])
    simple = df.ddpm_loss(key, lambda x, t: jnp.sin(x), SCHED, x0, prediction)
    np.testing.assert_array_equal(df.hybrid_loss(key, _model(w), SCHED, x0, 0.0, prediction), simple)
    hybrid = df.hybrid_loss(key, _model(w), SCHED, x0, 0.001, prediction)
    assert hybrid.shape == (8,) and bool(jnp.all(hybrid > simple))

    # the mean's gradient comes from L_simple alone (stop_gradient in the bound), v's from the bound alone
    def total(w, weight):
        return jnp.mean(df.hybrid_loss(key, _model(w), SCHED, x0, weight, prediction))

    g_simple, g_hybrid = jax.grad(total)(w, 0.0), jax.grad(total)(w, 0.001)
    assert float(g_hybrid[0]) == pytest.approx(float(g_simple[0]), rel=1e-6)
    assert float(g_simple[1]) == 0.0 and abs(float(g_hybrid[1])) > 1e-6
    check_grads(lambda w: total(w, 0.001), (w,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


def test_hybrid_loss_names_bad_arguments():
    x0 = jnp.zeros((2, 3))
    with pytest.raises(TypeError, match="must return a pair"):
        df.hybrid_loss(jax.random.key(0), lambda x, t: x, SCHED, x0)
    with pytest.raises(ValueError, match="vlb_weight"):
        df.hybrid_loss(jax.random.key(0), _model(jnp.ones(2)), SCHED, x0, -1.0)
    with pytest.raises(ValueError, match="num_bins"):
        df.discretized_gaussian_log_likelihood(0.0, 0.0, 0.0, num_bins=1)
    with pytest.raises(ValueError, match="distinct ints in 0 .. 99"):
        df.respace(SCHED, [3, 3, 7])
    with pytest.raises(ValueError, match="num_steps"):
        df.learned_variance_sample(jax.random.key(0), _model(jnp.ones(2)), SCHED, (2, 3), 101)


def test_respace_keeps_the_marginals_at_the_kept_timesteps():
    ts = df.spaced_timesteps(100, 10, "linspace")
    sub = df.respace(SCHED, ts)
    assert sub.num_timesteps == 10
    np.testing.assert_allclose(sub.alphas_cumprod, np.asarray(SCHED.alphas_cumprod)[np.sort(ts)], rtol=1e-6)
    full = df.respace(SCHED, np.arange(100))  # betas again, from ratios of the float32 abar's
    np.testing.assert_allclose(full.betas, SCHED.betas, rtol=5e-4)


def test_the_sampler_with_a_constant_v_is_ddpm_with_the_fixed_variances_and_compiles_once():
    eps = lambda x, t: 0.1 * x * (1.0 + t[:, None] / 100.0)  # noqa: E731
    for v, variance in ((0.0, "fixed_small"), (1.0, "fixed_large")):
        model = lambda x, t, v=v: (eps(x, t), jnp.full_like(x, v))  # noqa: E731
        got = df.learned_variance_sample(jax.random.key(5), model, SCHED, (3, 2))
        np.testing.assert_allclose(got, df.sample(jax.random.key(5), eps, SCHED, (3, 2), variance), atol=2e-6)
    # strided: the T-step sampler of the respaced schedule, the model told the original timesteps
    ts = np.sort(df.spaced_timesteps(100, 10, "linspace"))
    model = lambda x, t: (eps(x, t), jnp.zeros_like(x))  # noqa: E731
    got = df.learned_variance_sample(jax.random.key(6), model, SCHED, (3, 2), 10)
    expected = df.sample(jax.random.key(6), lambda x, k: eps(x, jnp.asarray(ts)[k]), df.respace(SCHED, ts), (3, 2))
    np.testing.assert_allclose(got, expected, atol=2e-6)
    n = _learned_variance._learned_sample._cache_size()
    df.learned_variance_sample(jax.random.key(7), model, SCHED, (3, 2), 10)
    assert _learned_variance._learned_sample._cache_size() == n


def test_on_gaussian_data_the_optimal_variance_lies_between_the_bounds_and_samples_exactly_in_10_steps():
    """Data x0 ~ N(0, s^2). With a = sqrt(abar_k), sigma^2 = 1 - abar_k, the posterior of x0
    given x_k is Gaussian with variance s^2 sigma^2 / (a^2 s^2 + sigma^2), so the true reverse
    step is p(x_{k-1} | x_k) = N(c1 E[x0 | x_k] + c2 x_k, tilde-beta_k + c1^2 Var[x0 | x_k])
    (c1, c2 the posterior coefficients of the respaced chain). Ho et al. (sec. 3.2) bound it by
    tilde-beta_k (x0 deterministic) and beta_k (x0 ~ N(0, I)): for s < 1 the optimal v is in
    [0, 1]. Sampled with that v, 10 strided steps reproduce the data variance; the fixed
    tilde-beta (v = 0) under-disperses and beta (v = 1) over-disperses."""
    s2, n = 0.25, 10
    ts = np.sort(df.spaced_timesteps(100, n, "linspace"))
    sub = df.respace(SCHED, ts)
    abar = np.asarray(sub.alphas_cumprod, np.float64)
    post_var = s2 * (1 - abar) / (abar * s2 + 1 - abar)  # Var[x0 | x_k]
    optimal = np.asarray(sub.posterior_variance, np.float64) + np.asarray(sub.posterior_mean_coef1, np.float64) ** 2 \
        * post_var
    small = np.exp(np.asarray(sub.posterior_log_variance_clipped, np.float64))
    large = np.asarray(sub.betas, np.float64)
    v_opt = (np.log(optimal) - np.log(small)) / (np.log(large) - np.log(small))
    assert np.all((v_opt[1:] >= 0.0) & (v_opt[1:] <= 1.0))
    gain = np.sqrt(abar) * s2 / (abar * s2 + 1 - abar)  # E[x0 | x_k] = gain x_k
    eps_gain = (1.0 - np.sqrt(abar) * gain) / np.sqrt(1 - abar)  # the exact eps predictor
    index = {int(t): k for k, t in enumerate(ts)}
    k_of_t = np.zeros(100, np.int32)
    k_of_t[list(index)] = list(index.values())
    tables = jnp.asarray(eps_gain, jnp.float32), jnp.asarray(v_opt, jnp.float32), jnp.asarray(k_of_t)

    def model(v_choice):
        def fn(x, t):
            k = tables[2][t][:, None]
            v = tables[1][k] if v_choice is None else jnp.full_like(x, v_choice)
            return tables[0][k] * x, v
        return fn

    shape = (20_000, 1)
    final_var = s2 - post_var[0]  # the last step returns the mean E[x0 | x_{t_0}]
    var = {c: float(jnp.var(df.learned_variance_sample(jax.random.key(8), model(c), SCHED, shape, n)))
           for c in (None, 0.0, 1.0)}
    se = final_var * np.sqrt(2.0 / shape[0])  # the sample variance's standard error
    assert abs(var[None] - final_var) < 4 * se
    assert var[0.0] < final_var - 10 * se and var[1.0] > final_var + 10 * se
