"""Tests for genjax.gan.

Every reference value names its source: the formula written out in float64 NumPy in the test,
a closed form (the identity V(G, D*) = 2 JS - 2 log 2 of Goodfellow et al. 2014, theorem 1; the
gradient of a linear critic; the chi distribution of a 2-D Gaussian's radius), or
`genjax.divergences` (itself tested against SciPy).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genjax import data, divergences
from genjax import gan

LOG2 = math.log(2.0)


def _log_sigmoid64(x):
    x = np.asarray(x, np.float64)
    return -np.logaddexp(0.0, -x)


def _logits(seed, shape):
    return np.random.default_rng(seed).normal(0.0, 2.0, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------ the minimax game


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_discriminator_loss_matches_its_formula(smoothing):
    """Reference: -E[(1-a) log s(r) + a log(1 - s(r))] - E log(1 - s(f)) in float64."""
    r, f = _logits(0, (7,)), _logits(1, (5, 1))
    ref = (-np.mean((1 - smoothing) * _log_sigmoid64(r) + smoothing * _log_sigmoid64(-r))
           - np.mean(_log_sigmoid64(-f)))
    np.testing.assert_allclose(gan.discriminator_loss(r, f, label_smoothing=smoothing), ref, rtol=1e-6)


def test_one_sided_label_smoothing_moves_the_optimal_real_output_to_one_minus_a():
    """Closed form: d/dl [(1-a) softplus(-l) + a softplus(l)] = 0 at sigmoid(l) = 1 - a."""
    a = 0.1
    logit = math.log((1 - a) / a)
    grad = jax.grad(lambda l: gan.discriminator_loss(l, jnp.zeros(1), a))(jnp.float32(logit))
    assert abs(float(grad)) < 1e-6


def test_generator_losses_match_their_formulas():
    """Reference: non-saturating -E log s(f); saturating E log(1 - s(f)) (float64)."""
    f = _logits(2, (9,))
    np.testing.assert_allclose(gan.generator_loss(f), -np.mean(_log_sigmoid64(f)), rtol=1e-6)
    np.testing.assert_allclose(gan.generator_loss(f, saturating=True), np.mean(_log_sigmoid64(-f)), rtol=1e-6)


def test_saturating_generator_gradient_vanishes_where_the_discriminator_rejects():
    """Closed form: d/dl log(1 - s(l)) = -s(l) -> 0 as l -> -inf; d/dl -log s(l) = -(1 - s(l)) -> -1."""
    l = jnp.array([-20.0])
    assert abs(float(jax.grad(lambda x: gan.generator_loss(x, saturating=True))(l)[0])) < 1e-8
    np.testing.assert_allclose(jax.grad(gan.generator_loss)(l), [-1.0], rtol=1e-6)


def test_minimax_value_matches_its_formula_and_is_minus_the_discriminator_loss():
    r, f = _logits(3, (6,)), _logits(4, (4,))
    ref = np.mean(_log_sigmoid64(r)) + np.mean(_log_sigmoid64(-f))
    np.testing.assert_allclose(gan.minimax_value(r, f), ref, rtol=1e-6)
    np.testing.assert_allclose(gan.minimax_value(r, f), -gan.discriminator_loss(r, f), rtol=1e-6)


def test_value_at_the_optimal_discriminator_is_2_js_minus_2_log_2_on_samples():
    """Goodfellow et al. 2014, theorem 1: V(G, D*) = 2 JS(p_r || p_g) - 2 log 2.

    p_r = (4, 2, 1, 1, 0) / 8 and p_g = (1, 1, 2, 3, 1) / 8 as 8-sample multisets, so the batch
    means of `minimax_value` are the exact expectations; the logits are logit(D*) = log p_r - log p_g
    (+-1e4 where one of them is 0: D* = 0 or 1 there).
    """
    counts_r = np.array([4, 2, 1, 1, 0])
    counts_g = np.array([1, 1, 2, 3, 1])
    p_r, p_g = counts_r / 8.0, counts_g / 8.0
    with np.errstate(divide="ignore"):
        logit = np.clip(np.log(p_r) - np.log(p_g), -1e4, 1e4).astype(np.float32)
    real = np.repeat(logit, counts_r)
    fake = np.repeat(logit, counts_g)
    js = float(divergences.js_divergence(p_r, p_g))
    np.testing.assert_allclose(gan.minimax_value(real, fake), 2 * js - 2 * LOG2, rtol=1e-5, atol=1e-6)
    # D* from `optimal_discriminator` agrees with those logits.
    np.testing.assert_allclose(gan.optimal_discriminator(p_r, p_g), np.exp(_log_sigmoid64(logit)), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_at_the_optimal_discriminator_for_random_distributions(seed):
    """The same identity with expectations as weighted sums, and D* beats any perturbed D."""
    rng = np.random.default_rng(seed)
    p_r, p_g = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
    d = np.asarray(gan.optimal_discriminator(p_r, p_g), np.float64)
    value = float(np.sum(p_r * np.log(d)) + np.sum(p_g * np.log1p(-d)))
    js = float(divergences.js_divergence(p_r, p_g))
    np.testing.assert_allclose(value, 2 * js - 2 * LOG2, rtol=1e-5)
    for _ in range(5):
        d2 = np.clip(d + rng.normal(0, 0.05, size=d.shape), 1e-6, 1 - 1e-6)
        assert np.sum(p_r * np.log(d2)) + np.sum(p_g * np.log1p(-d2)) <= value + 1e-9


def test_optimal_discriminator_edges_and_shapes():
    """p_r / (p_r + p_g); 1/2 (and no NaN gradient) where both are 0."""
    np.testing.assert_allclose(gan.optimal_discriminator([0.0, 1.0, 0.0], [0.0, 0.0, 2.0]), [0.5, 1.0, 0.0])
    g = jax.grad(lambda p: jnp.sum(gan.optimal_discriminator(p, jnp.zeros(2))))(jnp.zeros(2))
    assert np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="same shape"):
        gan.optimal_discriminator(np.ones(3), np.ones(4))


def test_optimal_discriminator_rejects_concrete_invalid_densities_and_is_nan_when_traced():
    """Issue 15: a negative density gave D* = -1. Concrete negative, NaN or infinite densities
    are a ValueError naming the argument; traced ones give NaN (documented), never -1."""
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="p_real"):
            gan.optimal_discriminator(jnp.array([bad, 1.0]), jnp.array([1.0, 1.0]))
        with pytest.raises(ValueError, match="p_gen"):
            gan.optimal_discriminator(jnp.array([1.0, 1.0]), jnp.array([1.0, bad]))
    traced = jax.jit(gan.optimal_discriminator)(jnp.array([-1.0, 1.0, 0.0]), jnp.array([0.0, 3.0, 0.0]))
    assert math.isnan(float(traced[0]))
    np.testing.assert_allclose(traced[1:], [0.25, 0.5])  # the valid entries are unaffected


def test_optimal_discriminator_gradient_at_tiny_densities():
    """Closed form: dD*/dp_r = p_g / (p_r + p_g)^2 and dD*/dp_g = -p_r / (p_r + p_g)^2; at
    p_r = p_g = 1e-30 that is +-2.5e29 (finite in float32, while (p_r + p_g)^2 underflows)."""
    pr, pg = jnp.full((2,), 1e-30), jnp.full((2,), 1e-30)
    g_r, g_g = jax.grad(lambda a, b: jnp.sum(gan.optimal_discriminator(a, b)), argnums=(0, 1))(pr, pg)
    np.testing.assert_allclose(g_r, [2.5e29, 2.5e29], rtol=1e-5)
    np.testing.assert_allclose(g_g, [-2.5e29, -2.5e29], rtol=1e-5)


# ------------------------------------------------------------------------------ WGAN, WGAN-GP


def test_wasserstein_losses_match_their_formulas():
    r, f = _logits(5, (8,)), _logits(6, (3,))
    np.testing.assert_allclose(gan.wasserstein_critic_loss(r, f), np.mean(f) - np.mean(r), rtol=1e-6)
    np.testing.assert_allclose(gan.wasserstein_generator_loss(f), -np.mean(f), rtol=1e-6)


@pytest.mark.parametrize("mu", [0.0, 0.5, 2.0, -3.0])
def test_wasserstein_1d_of_shifted_gaussians_is_about_the_shift(mu):
    """Closed form: W1(N(0, 1), N(mu, 1)) = |mu| (a translation); 20,000 samples each."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, (20_000,))
    y = mu + jax.random.normal(k2, (20_000,))
    assert abs(float(divergences.wasserstein_1d(x, y)) - abs(mu)) < 0.03


@pytest.mark.parametrize("w", [(3.0, 4.0), (0.6, 0.8), (0.1, -0.2)])
def test_gradient_penalty_of_a_linear_critic(w):
    """Closed form: critic x -> w.x has gradient w everywhere, so the penalty is (||w|| - 1)^2."""
    w = jnp.asarray(w)
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(16, 2)).astype(np.float32), rng.normal(size=(16, 2)).astype(np.float32)
    penalty = gan.gradient_penalty(jax.random.key(1), lambda b: b @ w, real, fake)
    np.testing.assert_allclose(penalty, (float(jnp.linalg.norm(w)) - 1.0) ** 2, rtol=1e-5, atol=1e-7)
    # target 2: (||w|| - 2)^2; critic output [B, 1] is accepted too.
    p2 = gan.gradient_penalty(jax.random.key(1), lambda b: (b @ w)[:, None], real, fake, target=2.0)
    np.testing.assert_allclose(p2, (float(jnp.linalg.norm(w)) - 2.0) ** 2, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_on_images_and_its_gradient_with_respect_to_the_critic():
    """Linear critic on [B, 4, 4, 1] images: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||."""
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=(4, 4, 1)), jnp.float32)
    real = rng.normal(size=(6, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(size=(6, 4, 4, 1)).astype(np.float32)

    def penalty(w):
        return gan.gradient_penalty(jax.random.key(0), lambda b: jnp.sum(b * w, axis=(1, 2, 3)), real, fake)

    n = float(jnp.linalg.norm(w))
    np.testing.assert_allclose(penalty(w), (n - 1) ** 2, rtol=1e-5)
    np.testing.assert_allclose(jax.grad(penalty)(w), 2 * (n - 1) * w / n, rtol=1e-4, atol=1e-6)
    check_grads(penalty, (w,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_gradient_penalty_of_a_constant_critic_is_finite():
    """A critic with zero input gradient: penalty target^2 = 1, and no NaN in its gradient."""
    x = jnp.ones((4, 2))
    f = lambda c: gan.gradient_penalty(jax.random.key(0), lambda b: c * jnp.sum(b * 0.0, axis=1), x, x)
    assert float(f(1.0)) == 1.0
    assert np.isfinite(float(jax.grad(f)(1.0)))


def test_gradient_penalty_rejects_bad_inputs():
    x = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(jax.random.key(0), lambda b: b[:, 0], x, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="one score per example"):
        gan.gradient_penalty(jax.random.key(0), lambda b: b, x, x)
    with pytest.raises(TypeError, match="critic_fn"):
        gan.gradient_penalty(jax.random.key(0), "critic", x, x)


def test_gradient_penalty_interpolates_between_real_and_fake():
    """The penalty only sees points on the segments between real and fake pairs: a critic whose
    gradient is w inside [0, 1]^2 and 0 elsewhere gives (||w|| - 1)^2 for real, fake in the box."""
    w = jnp.array([0.0, 3.0])
    critic = lambda b: jnp.where(jnp.all((b >= 0) & (b <= 1), axis=1), b @ w, 0.0)
    rng = np.random.default_rng(2)
    real, fake = rng.uniform(0.1, 0.9, (32, 2)), rng.uniform(0.1, 0.9, (32, 2))
    np.testing.assert_allclose(gan.gradient_penalty(jax.random.key(3), critic, real, fake), 4.0, rtol=1e-5)


def test_r1_penalty_of_a_quadratic_critic():
    """Closed form: D(x) = 0.5 x^T A x has grad_x D = A x, so R1 = mean_i ||A x_i||^2; its
    gradient with respect to A is 2 mean_i (A x_i) x_i^T (Mescheder et al. 2018, eq. 9)."""
    rng = np.random.default_rng(4)
    a = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
    a = 0.5 * (a + a.T)
    x = jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)

    def r1(a):
        return gan.r1_penalty(lambda b: 0.5 * jnp.einsum("bi,ij,bj->b", b, a, b), x)

    ax = x @ a
    np.testing.assert_allclose(r1(a), np.mean(np.sum(np.square(ax), axis=1)), rtol=1e-5)
    # d/dA of mean ||A x||^2 with A symmetric in the critic: the critic's gradient is (A + A^T) x / 2.
    np.testing.assert_allclose(jax.grad(r1)(a), 2 * (ax.T @ x / x.shape[0] + x.T @ ax / x.shape[0]) / 2, rtol=1e-4, atol=1e-5)
    check_grads(r1, (a,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    # A linear critic w.x: R1 = ||w||^2 whatever the data; [B, 1] scores and images are accepted.
    w = jnp.ones((2, 2, 1)) * 0.5
    imgs = jnp.asarray(rng.normal(size=(4, 2, 2, 1)), jnp.float32)
    np.testing.assert_allclose(gan.r1_penalty(lambda b: jnp.sum(b * w, axis=(1, 2, 3))[:, None], imgs), 1.0, rtol=1e-6)


def test_r1_penalty_is_zero_for_a_flat_critic_and_rejects_bad_inputs():
    x = jnp.ones((4, 2))
    assert float(gan.r1_penalty(lambda b: jnp.zeros(b.shape[0]), x)) == 0.0
    with pytest.raises(ValueError, match="one score per example"):
        gan.r1_penalty(lambda b: b, x)
    with pytest.raises(TypeError, match="critic_fn"):
        gan.r1_penalty("critic", x)


def test_clip_weights():
    params = {"a": jnp.array([-1.0, 0.005, 2.0]), "b": {"c": jnp.array(-0.3)}}
    out = gan.clip_weights(params, 0.01)
    np.testing.assert_allclose(out["a"], [-0.01, 0.005, 0.01])
    np.testing.assert_allclose(out["b"]["c"], -0.01)
    with pytest.raises(ValueError, match="`c`"):
        gan.clip_weights(params, 0.0)


def test_clip_weights_rejects_integer_leaves_and_bad_bounds():
    """Issue 15: integer leaves were clipped to int(c) = 0 (zeroed). They are a TypeError naming
    the leaf's path; c must be a finite positive number (booleans and strings are not)."""
    params = {"a": jnp.array([-1.0, 2.0]), "n": {"steps": jnp.array([3, -4])}}
    with pytest.raises(TypeError, match=r"params\['n'\]\['steps'\]"):
        gan.clip_weights(params, 0.01)
    ok = {"a": jnp.array([-1.0, 2.0])}
    for bad in (math.nan, math.inf, -0.01):
        with pytest.raises(ValueError, match="`c`"):
            gan.clip_weights(ok, bad)
    for bad in ("0.01", True, None):
        with pytest.raises(TypeError, match="`c`"):
            gan.clip_weights(ok, bad)
    # A traced bound is used as given.
    np.testing.assert_allclose(jax.jit(gan.clip_weights)(ok, 0.5)["a"], [-0.5, 0.5])


# ------------------------------------------------------------------------------ numerics


LOSSES = {
    "discriminator_loss": lambda r, f: gan.discriminator_loss(r, f),
    "discriminator_loss_smoothed": lambda r, f: gan.discriminator_loss(r, f, 0.1),
    "generator_loss": lambda r, f: gan.generator_loss(f),
    "generator_loss_saturating": lambda r, f: gan.generator_loss(f, saturating=True),
    "minimax_value": gan.minimax_value,
    "wasserstein_critic_loss": gan.wasserstein_critic_loss,
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_values_and_gradients_at_extreme_logits(name):
    """Logits of +-1e4 (sigmoid saturates to exactly 0 or 1 in float32)."""
    fn = LOSSES[name]
    for r, f in [(1e4, -1e4), (-1e4, 1e4), (1e4, 1e4), (-1e4, -1e4)]:
        real, fake = jnp.full((3,), r), jnp.full((2,), f)
        value = fn(real, fake)
        grads = jax.grad(fn, argnums=(0, 1))(real, fake)
        assert np.isfinite(float(value)), (name, r, f)
        assert all(np.all(np.isfinite(g)) for g in grads), (name, r, f)


def test_perfect_discriminator_at_infinite_logits_has_loss_zero():
    """Closed form: with logits +inf on real and -inf on fake, D = 1 and 0 exactly, so
    -V = 0; the unused smoothing term 0 * softplus(+inf) gave NaN. With smoothing a > 0 the
    loss is +inf (a log(1 - D(x)) with D(x) = 1), a limit, not NaN."""
    real, fake = jnp.array([jnp.inf, jnp.inf]), jnp.array([-jnp.inf])
    assert float(gan.discriminator_loss(real, fake)) == 0.0
    g = jax.grad(gan.discriminator_loss, argnums=(0, 1))(real, fake)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
    assert float(gan.discriminator_loss(real, fake, 0.1)) == math.inf
    # The derivative in a traced smoothing a at a = 0 keeps both terms: -softplus(-r) + softplus(r) = r.
    da = jax.grad(lambda a: gan.discriminator_loss(jnp.array([1.0]), jnp.array([-1.0]), a))(0.0)
    np.testing.assert_allclose(da, 1.0, rtol=1e-6)


def test_extreme_logit_values():
    """Closed forms: a perfect discriminator has loss 0; a perfectly fooled one 2e4."""
    assert float(gan.discriminator_loss(jnp.full(3, 1e4), jnp.full(3, -1e4))) == 0.0
    np.testing.assert_allclose(gan.discriminator_loss(jnp.full(3, -1e4), jnp.full(3, 1e4)), 2e4, rtol=1e-6)
    np.testing.assert_allclose(gan.generator_loss(jnp.full(3, -1e4)), 1e4, rtol=1e-6)
    np.testing.assert_allclose(gan.generator_loss(jnp.full(3, -1e4), saturating=True), 0.0, atol=1e-30)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_check_grads(name):
    r, f = jnp.asarray(_logits(7, (4,))), jnp.asarray(_logits(8, (3,)))
    check_grads(LOSSES[name], (r, f), order=2, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_bfloat16_logits_give_finite_bfloat16_losses():
    r = jnp.array([1e4, -3.0, 0.5], jnp.bfloat16)
    f = jnp.array([-1e4, 2.0], jnp.bfloat16)
    out = gan.discriminator_loss(r, f, 0.1)
    assert out.dtype == jnp.bfloat16 and np.isfinite(float(out))
    np.testing.assert_allclose(float(out), float(gan.discriminator_loss(r.astype(jnp.float32), f.astype(jnp.float32), 0.1)),
                               rtol=2e-2)


def test_jitted_losses_compile_once():
    f = jax.jit(lambda r, x: gan.discriminator_loss(r, x, 0.1) + gan.generator_loss(x))
    f(jnp.zeros(4), jnp.zeros(4))
    f(jnp.ones(4), -jnp.ones(4))
    assert f._cache_size() == 1


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_label_smoothing_is_validated(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        gan.discriminator_loss(jnp.zeros(2), jnp.zeros(2), bad)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="real_logits.*empty"):
        gan.discriminator_loss(jnp.zeros(0), jnp.zeros(2))
    with pytest.raises(TypeError, match="saturating"):
        gan.generator_loss(jnp.zeros(2), saturating="yes")
    with pytest.raises(TypeError, match="fake_logits"):
        gan.generator_loss(jnp.zeros(2, jnp.complex64))


# ------------------------------------------------------------------------------ improved techniques


def test_feature_matching_loss_matches_its_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 3, 2)), rng.normal(size=(7, 3, 2))
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2)
    np.testing.assert_allclose(gan.feature_matching_loss(a.astype(np.float32), b.astype(np.float32)), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="feature shape"):
        gan.feature_matching_loss(np.ones((4, 3)), np.ones((4, 2)))


def test_historical_average_is_the_running_mean_of_past_parameters():
    """Reference: np.mean of the parameter sequence theta_1..theta_t."""
    rng = np.random.default_rng(4)
    seq = [{"w": rng.normal(size=(3,)).astype(np.float32), "b": np.float32(rng.normal())} for _ in range(6)]
    state = gan.historical_average_init(seq[0])
    for p in seq[1:]:
        state = jax.jit(gan.historical_average_update)(state, p)
    assert int(state.count) == 6
    np.testing.assert_allclose(state.average["w"], np.mean([p["w"] for p in seq], axis=0), rtol=1e-5)
    np.testing.assert_allclose(state.average["b"], np.mean([p["b"] for p in seq]), rtol=1e-5)
    ema = gan.historical_average_update(gan.historical_average_init(seq[0]), seq[1], decay=0.9)
    np.testing.assert_allclose(ema.average["w"], 0.9 * seq[0]["w"] + 0.1 * seq[1]["w"], rtol=1e-6)


def test_historical_average_requires_matching_leaves():
    """Issue 15: leaves of another shape were broadcast into the average. The structure, each
    leaf's shape and dtype must match (ValueError naming the leaf's path); non-float leaves are
    a TypeError (an integer running mean was truncated: it never moved)."""
    state = gan.historical_average_init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    with pytest.raises(ValueError, match=r"params\['w'\].*shape"):
        gan.historical_average_update(state, {"w": jnp.ones((2, 3)), "b": jnp.ones(())})
    with pytest.raises(ValueError, match=r"params\['b'\].*dtype"):
        gan.historical_average_update(state, {"w": jnp.ones(3), "b": jnp.ones((), jnp.bfloat16)})
    with pytest.raises(ValueError, match=r"params\['w'\].*shape"):
        gan.historical_average_penalty({"w": jnp.ones(1), "b": jnp.ones(())}, state)
    with pytest.raises(ValueError, match="structure"):
        gan.historical_average_update(state, {"w": jnp.ones(3)})
    with pytest.raises(TypeError, match=r"params\['n'\]"):
        gan.historical_average_init({"n": jnp.array([1, 2])})
    with pytest.raises(TypeError, match="HistoricalAverage"):
        gan.historical_average_update({"w": jnp.zeros(3)}, {"w": jnp.zeros(3)})
    # decay in [0, 1]: 1 keeps the average, 0 replaces it; outside, NaN, strings, bools: errors.
    theta = {"w": jnp.ones(3), "b": jnp.ones(())}
    np.testing.assert_array_equal(gan.historical_average_update(state, theta, decay=1.0).average["w"], 0.0)
    np.testing.assert_array_equal(gan.historical_average_update(state, theta, decay=0.0).average["w"], 1.0)
    for bad in (1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match="decay"):
            gan.historical_average_update(state, theta, decay=bad)
    for bad in ("0.9", True):
        with pytest.raises(TypeError, match="decay"):
            gan.historical_average_update(state, theta, decay=bad)


def test_historical_average_penalty_and_its_gradient():
    """||theta - avg||^2 with gradient 2 (theta - avg); the average gets no gradient."""
    avg = gan.historical_average_init({"w": jnp.array([1.0, -1.0])})
    theta = {"w": jnp.array([2.0, 1.0])}
    np.testing.assert_allclose(gan.historical_average_penalty(theta, avg), 5.0)
    np.testing.assert_allclose(jax.grad(gan.historical_average_penalty)(theta, avg)["w"], [2.0, 4.0])
    g_avg = jax.grad(lambda a: gan.historical_average_penalty(theta, gan.HistoricalAverage(a, avg.count)))(avg.average)
    np.testing.assert_allclose(g_avg["w"], [0.0, 0.0])
    with pytest.raises(ValueError, match="structure"):
        gan.historical_average_penalty({"v": jnp.zeros(2)}, avg)


def test_instance_noise_and_its_annealing():
    x = jnp.zeros((20_000,))
    noisy = gan.instance_noise(jax.random.key(0), x, 0.3)
    assert abs(float(jnp.std(noisy)) - 0.3) < 0.01
    np.testing.assert_array_equal(gan.instance_noise(jax.random.key(0), x, 0.0), x)
    np.testing.assert_allclose(gan.annealed_noise_std(jnp.array([0, 50, 100, 200]), 0.2, 100), [0.2, 0.1, 0.0, 0.0],
                               atol=1e-7)
    with pytest.raises(ValueError, match="anneal_steps"):
        gan.annealed_noise_std(0, 0.1, 0)


def test_keys_and_static_numbers_follow_the_checks_policy():
    """genjax._checks: keys are never defaulted (None is a TypeError naming `key`); static
    integers are Python ints (2.0 and True are TypeErrors, never truncated); static floats
    reject NaN, strings and booleans."""
    x = jnp.ones((4, 2))
    with pytest.raises(TypeError, match="key"):
        gan.gradient_penalty(None, lambda b: b[:, 0], x, x)
    with pytest.raises(TypeError, match="key"):
        gan.instance_noise(None, x, 0.1)
    with pytest.raises(TypeError, match="key"):
        gan.instance_noise(jnp.zeros(2, jnp.float32), x, 0.1)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="num_packed"):
            gan.pack(x, bad)
        with pytest.raises(TypeError, match="anneal_steps"):
            gan.annealed_noise_std(0, 0.1, bad)
    with pytest.raises(TypeError, match="step"):
        gan.annealed_noise_std(2.5, 0.1, 10)
    with pytest.raises(ValueError, match="step"):
        gan.annealed_noise_std(jnp.array([3, -1]), 0.1, 10)
    for fn in (lambda v: gan.instance_noise(jax.random.key(0), x, v),
               lambda v: gan.annealed_noise_std(0, v, 10),
               lambda v: gan.gradient_penalty(jax.random.key(0), lambda b: b[:, 0], x, x, target=v),
               lambda v: gan.discriminator_loss(x[:, 0], x[:, 0], v),
               lambda v: gan.mode_metrics(x, x, v),
               lambda v: gan.mode_metrics(x, x, 0.1, threshold=v)):
        with pytest.raises(ValueError):
            fn(math.nan)
        with pytest.raises(TypeError):
            fn("0.3")
        with pytest.raises(TypeError):
            fn(True)


def test_pack_groups_consecutive_samples():
    x = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(gan.pack(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    assert gan.pack(jnp.zeros((8, 28, 28, 1)), 4).shape == (2, 112, 28, 1)
    np.testing.assert_array_equal(gan.pack(x, 1), x)
    with pytest.raises(ValueError, match="divisible"):
        gan.pack(x, 4)


# ------------------------------------------------------------------------------ mode metrics


def test_mode_metrics_on_a_hand_made_sample():
    modes = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = jnp.array([[0.0, 0.1], [0.2, 0.0], [10.0, 0.25], [5.0, 5.0], [0.0, 9.71]])  # std 0.1: HQ <= 0.3
    m = gan.mode_metrics(samples, modes, std=0.1)
    assert float(m["high_quality"]) == pytest.approx(4 / 5)
    assert int(m["modes_captured"]) == 3
    np.testing.assert_array_equal(m["mode_histogram"], [2, 1, 1, 0])
    # Reference: q = (1/2, 1/4, 1/4, 0) against uniform 1/4: sum q log(4 q) = 0.5 log 2.
    np.testing.assert_allclose(m["reverse_kl"], 0.5 * LOG2, rtol=1e-6)
    np.testing.assert_array_equal(m["is_high_quality"], [True, True, True, False, True])


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mode_metrics_of_exact_samples(name):
    """Closed form: the radius of a 2-D isotropic Gaussian is Rayleigh, P(r <= 3 std) = 1 - e^-4.5
    = 0.98889; with 2,500 samples every mode is captured and the reverse KL is about
    (K - 1) / (2 N) (0.0014 for the ring, 0.0049 for the grid)."""
    dist = data.toy_distribution(name)
    x = dist.sample(jax.random.key(0), 2500)
    m = gan.mode_metrics(x, dist.modes, dist.std)
    assert abs(float(m["high_quality"]) - (1 - math.exp(-4.5))) < 0.008
    assert int(m["modes_captured"]) == len(dist.modes)
    assert float(m["reverse_kl"]) < 0.02


def test_mode_metrics_of_a_collapsed_sample_and_of_garbage():
    """All samples on one mode: 1 mode, reverse KL log K; no high-quality sample: KL = +inf."""
    modes = data.grid_modes()
    m = gan.mode_metrics(jnp.tile(modes[3], (100, 1)), modes, data.GRID_STD)
    assert int(m["modes_captured"]) == 1
    np.testing.assert_allclose(m["reverse_kl"], math.log(25), rtol=1e-6)
    m = gan.mode_metrics(jnp.full((10, 2), 1.0), modes, data.GRID_STD)
    assert float(m["high_quality"]) == 0.0 and int(m["modes_captured"]) == 0 and float(m["reverse_kl"]) == np.inf


def test_mode_metrics_vmaps_over_seeds():
    dist = data.toy_distribution("ring")
    xs = jax.vmap(lambda k: dist.sample(k, 400))(jax.random.split(jax.random.key(1), 3))
    m = jax.jit(jax.vmap(lambda x: gan.mode_metrics(x, dist.modes, dist.std)))(xs)
    assert m["modes_captured"].shape == (3,) and m["mode_histogram"].shape == (3, 8)
    single = gan.mode_metrics(xs[1], dist.modes, dist.std)
    np.testing.assert_allclose(m["reverse_kl"][1], single["reverse_kl"], rtol=1e-6)


def test_mode_metrics_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same D"):
        gan.mode_metrics(jnp.zeros((5, 2)), jnp.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError, match="std"):
        gan.mode_metrics(jnp.zeros((5, 2)), jnp.zeros((3, 2)), 0.0)


# The doctests, `__all__` and the light import of this module: tests/test_math_modules.py.
