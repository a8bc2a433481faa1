"""Tests for genjax.divergences.

Every reference value names its source: a closed form written out in the test, the course's
worked examples (quoted to the precision the course quotes them), or SciPy (scipy.stats.entropy,
scipy.spatial.distance.jensenshannon, scipy.stats.wasserstein_distance), evaluated in float64.
Everything runs in float32 (the library's default) unless a test says otherwise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats
from scipy.spatial import distance

from genjax import divergences as dv

LOG2 = math.log(2.0)
LOG2_F32 = np.float32(LOG2)


def _dirichlet(seed: int, shape: tuple[int, ...], alpha: float = 1.0) -> np.ndarray:
    """Random distributions over the last axis (float64, strictly positive)."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


# A batch of 3 distributions over 7 outcomes: most tests share this shape, so the jitted kernels
# compile once for it (the suite's run time is mostly XLA compilation).
_SHAPE = (3, 7)


# The two-distribution functions on probabilities and their logits counterparts.
PROB_PAIR_FNS = {
    "cross_entropy": dv.cross_entropy,
    "kl_divergence": dv.kl_divergence,
    "js_divergence": dv.js_divergence,
}
LOGIT_PAIR_FNS = {
    "cross_entropy_from_logits": dv.cross_entropy_from_logits,
    "kl_divergence_from_logits": dv.kl_divergence_from_logits,
    "js_divergence_from_logits": dv.js_divergence_from_logits,
}


# ------------------------------------------------------------------------------------------
# SciPy references (float64 SciPy vs float32 genjax).
# ------------------------------------------------------------------------------------------


def test_entropy_matches_scipy():
    p = _dirichlet(0, _SHAPE)
    want = np.array([stats.entropy(row) for row in p])  # scipy.stats.entropy, nats
    want_bits = np.array([stats.entropy(row, base=2) for row in p])
    np.testing.assert_allclose(dv.entropy(_f32(p)), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dv.entropy(_f32(p), base=2), want_bits, rtol=1e-6, atol=1e-6)


def test_kl_and_cross_entropy_match_scipy():
    p, q = _dirichlet(1, _SHAPE), _dirichlet(2, _SHAPE)
    kl = np.array([stats.entropy(a, b) for a, b in zip(p, q)])  # scipy.stats.entropy(p, q)
    h = np.array([stats.entropy(a) for a in p])
    np.testing.assert_allclose(dv.kl_divergence(_f32(p), _f32(q)), kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dv.cross_entropy(_f32(p), _f32(q)), h + kl, rtol=1e-5, atol=1e-6)


def test_js_matches_scipy_jensenshannon_squared():
    p, q = _dirichlet(3, _SHAPE), _dirichlet(4, _SHAPE)
    # scipy.spatial.distance.jensenshannon is the JS *distance*, sqrt of the divergence.
    want = np.array([distance.jensenshannon(a, b) ** 2 for a, b in zip(p, q)])
    want_bits = np.array([distance.jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)])
    np.testing.assert_allclose(dv.js_divergence(_f32(p), _f32(q)), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        dv.js_divergence(_f32(p), _f32(q), base=2), want_bits, rtol=1e-5, atol=1e-6
    )


def test_wasserstein_matches_scipy():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 50)), rng.standard_t(3, size=(3, 50)) + 0.5
    want = np.array([stats.wasserstein_distance(a, b) for a, b in zip(x, y)])
    np.testing.assert_allclose(dv.wasserstein_1d(_f32(x[0]), _f32(y[0])), want[0], rtol=1e-5)
    # Leading batch axes are independent problems.
    np.testing.assert_allclose(dv.wasserstein_1d(_f32(x), _f32(y)), want, rtol=1e-5)
    # axis=0 on the transposed batch is the same thing.
    np.testing.assert_allclose(dv.wasserstein_1d(_f32(x.T), _f32(y.T), axis=0), want, rtol=1e-5)


def test_mutual_information_matches_scipy_kl_to_product_of_marginals():
    joint = _dirichlet(6, (12,)).reshape(3, 4)
    prod = np.outer(joint.sum(1), joint.sum(0))
    want = stats.entropy(joint.ravel(), prod.ravel())  # I(X;Y) = KL(p(x,y) || p(x)p(y))
    np.testing.assert_allclose(dv.mutual_information(_f32(joint)), want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Identities (Cover & Thomas, chapter 2).
# ------------------------------------------------------------------------------------------


def test_kl_nonnegative_and_zero_iff_equal():
    p, q = _f32(_dirichlet(7, (200, 10))), _f32(_dirichlet(8, (200, 10)))
    kl = dv.kl_divergence(p, q)
    assert kl.shape == (200,)
    assert bool(jnp.all(kl > 0))  # Gibbs' inequality, strict for p != q
    np.testing.assert_array_equal(dv.kl_divergence(p, p), 0.0)  # exactly 0 at p == q


def test_kl_is_asymmetric():
    p, q = _f32([0.5, 0.5]), _f32([0.9, 0.1])
    # Closed forms from the definition (Cover & Thomas eq. 2.26):
    # KL(p||q) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1), KL(q||p) = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5).
    pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108
    qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # 0.3681
    np.testing.assert_allclose(dv.kl_divergence(p, q), pq, rtol=1e-6)
    np.testing.assert_allclose(dv.kl_divergence(q, p), qp, rtol=1e-6)
    assert abs(float(dv.kl_divergence(p, q)) - float(dv.kl_divergence(q, p))) > 0.1


def test_js_symmetric_and_bounded():
    p, q = _f32(_dirichlet(9, (100, 5), alpha=0.3)), _f32(_dirichlet(10, (100, 5), alpha=0.3))
    pq, qp = dv.js_divergence(p, q), dv.js_divergence(q, p)
    np.testing.assert_allclose(pq, qp, rtol=1e-6, atol=1e-7)
    assert bool(jnp.all(pq >= 0))
    assert bool(jnp.all(pq <= jnp.nextafter(LOG2_F32, np.float32(1.0))))  # <= log 2 (+1 ulp)
    np.testing.assert_array_equal(dv.js_divergence(p, p), 0.0)


def test_cross_entropy_is_entropy_plus_kl():
    p, q = _f32(_dirichlet(11, _SHAPE)), _f32(_dirichlet(12, _SHAPE))
    np.testing.assert_allclose(
        dv.cross_entropy(p, q), dv.entropy(p) + dv.kl_divergence(p, q), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_entropy_of_uniform_is_log_n(n):
    np.testing.assert_allclose(dv.entropy(jnp.full((n,), 1.0 / n)), math.log(n), atol=1e-6)


@pytest.mark.parametrize("base", [2, 10, 0.5, np.float32(3.0)])
def test_base_is_nats_divided_by_log_base(base):
    p, q = _f32(_dirichlet(13, _SHAPE)), _f32(_dirichlet(14, _SHAPE))
    for fn in (dv.cross_entropy, dv.kl_divergence, dv.js_divergence):
        np.testing.assert_allclose(fn(p, q, base=base), fn(p, q) / math.log(base), rtol=1e-6)
    np.testing.assert_allclose(dv.entropy(p, base=base), dv.entropy(p) / math.log(base), rtol=1e-6)


@pytest.mark.parametrize(
    "base, error",
    [(1, ValueError), (1.0, ValueError), (0, ValueError), (-2.0, ValueError),
     (math.inf, ValueError), (math.nan, ValueError), ([2], ValueError),
     # genjax._checks' policy: strings, booleans and (traced) arrays are not static numbers.
     (True, TypeError), ("2", TypeError), (jnp.float32(2.0), TypeError)],
)
def test_invalid_base_raises(base, error):
    p = jnp.array([0.5, 0.5])
    for call in (
        lambda: dv.entropy(p, base=base),
        lambda: dv.kl_divergence(p, p, base=base),
        lambda: dv.js_divergence_from_logits(p, p, base=base),
        lambda: dv.mutual_information(jnp.eye(2) / 2, base=base),
    ):
        with pytest.raises(error, match="base"):
            call()


def test_mutual_information_closed_forms_and_identity():
    # Independent X, Y: I = 0. Perfectly correlated fair bits: I = H(X) = log 2 (1 bit).
    indep = jnp.outer(_f32([0.2, 0.8]), _f32([0.1, 0.3, 0.6]))
    np.testing.assert_allclose(dv.mutual_information(indep), 0.0, atol=1e-6)
    np.testing.assert_allclose(dv.mutual_information(jnp.eye(2) / 2, base=2), 1.0, rtol=1e-6)
    # I(X;Y) = H(X) + H(Y) - H(X,Y) (Cover & Thomas eq. 2.45), batched over a leading axis.
    joint = _f32(_dirichlet(15, (5, 12)).reshape(5, 3, 4))
    mi = dv.mutual_information(joint)
    want = dv.entropy(joint.sum(-1)) + dv.entropy(joint.sum(-2)) - dv.entropy(joint, axis=(-2, -1))
    assert mi.shape == (5,)
    np.testing.assert_allclose(mi, want, atol=2e-6)
    with pytest.raises(ValueError, match="joint"):
        dv.mutual_information(jnp.ones(4) / 4)


# ------------------------------------------------------------------------------------------
# The course's worked examples, in bits.
# ------------------------------------------------------------------------------------------

WEATHER = _f32([0.35, 0.35, 0.10, 0.10, 0.04, 0.04, 0.01, 0.01])
CODE = 2.0 ** -_f32([2, 2, 3, 3, 4, 4, 5, 5])  # q = 2^-length: the distribution the code suits


@pytest.mark.parametrize(
    "p, bits, tol",
    [
        ([0.5, 0.5], 1.0, 1e-6),  # 2 equiprobable states: 1 bit (exact)
        ([1 / 8] * 8, 3.0, 1e-6),  # 8 equiprobable states: 3 bits (exact)
        ([0.75, 0.25], 0.811, 5e-4),  # sunny/rainy: quoted 0.811 (3 decimals)
        (WEATHER, 2.23, 5e-3),  # quoted 2.23 (2 decimals); 2.2290 exactly
    ],
)
def test_course_entropies_in_bits(p, bits, tol):
    assert abs(float(dv.entropy(_f32(p), base=2)) - bits) <= tol


def test_course_code_lengths_and_kl_in_bits():
    h = float(dv.entropy(WEATHER, base=2))
    ce = float(dv.cross_entropy(WEATHER, CODE, base=2))
    # Average code length sum p_i * len_i = 0.7*2 + 0.2*3 + 0.08*4 + 0.02*5 = 2.42 bits (exact).
    assert abs(ce - 2.42) <= 1e-5
    # Reversed probabilities with the same code: 0.02*2 + 0.08*3 + 0.2*4 + 0.7*5 = 4.58 bits.
    reversed_p = WEATHER[::-1]
    ce_rev = float(dv.cross_entropy(reversed_p, CODE, base=2))
    assert abs(ce_rev - 4.58) <= 1e-5
    # KL = cross-entropy - entropy: 2.42 - 2.23 = 0.19 and 4.58 - 2.23 = 2.35 (quoted rounding).
    kl = float(dv.kl_divergence(WEATHER, CODE, base=2))
    kl_rev = float(dv.kl_divergence(reversed_p, CODE, base=2))
    assert abs(kl - (ce - h)) <= 1e-5 and abs(kl - 0.19) <= 5e-3
    assert abs(kl_rev - (ce_rev - float(dv.entropy(reversed_p, base=2)))) <= 1e-5
    assert abs(kl_rev - 2.35) <= 5e-3


# ------------------------------------------------------------------------------------------
# Gaussian KL: written formula, closed form, Monte Carlo.
# ------------------------------------------------------------------------------------------


def _gaussian_kl_formula(mq, lvq, mp, lvp):
    """The formula as written (Kingma & Welling 2014, appendix B), in float64 NumPy."""
    mq, lvq, mp, lvp = (np.asarray(a, np.float64) for a in (mq, lvq, mp, lvp))
    return 0.5 * np.sum(lvp - lvq + (np.exp(lvq) + (mq - mp) ** 2) / np.exp(lvp) - 1.0, axis=-1)


def test_gaussian_kl_matches_written_formula():
    rng = np.random.default_rng(16)
    mq, lvq, mp, lvp = (rng.normal(size=(4, 6)) for _ in range(4))
    got = dv.gaussian_kl(_f32(mq), _f32(lvq), _f32(mp), _f32(lvp))
    assert got.shape == (4,)
    np.testing.assert_allclose(got, _gaussian_kl_formula(mq, lvq, mp, lvp), rtol=1e-5)
    # Default p = N(0, I): the VAE prior term.
    np.testing.assert_allclose(
        dv.gaussian_kl(_f32(mq), _f32(lvq)), _gaussian_kl_formula(mq, lvq, 0.0, 0.0), rtol=1e-5
    )
    # p parameters broadcast into q's shape: a per-dimension prior [D] against a batch [B, D].
    np.testing.assert_allclose(
        dv.gaussian_kl(_f32(mq), _f32(lvq), _f32(mp[0]), _f32(lvp[0])),
        _gaussian_kl_formula(mq, lvq, mp[:1], lvp[:1]),
        rtol=1e-5,
    )


def test_gaussian_kl_unit_shift_is_half_nat():
    # KL(N(0,1) || N(1,1)) = (mu_q - mu_p)^2 / 2 = 0.5 nats (closed form).
    np.testing.assert_allclose(dv.gaussian_kl(jnp.zeros(1), jnp.zeros(1), jnp.ones(1)), 0.5)
    np.testing.assert_array_equal(dv.gaussian_kl(jnp.ones(3), jnp.zeros(3), 1.0, 0.0), 0.0)


def test_gaussian_kl_matches_monte_carlo():
    rng = np.random.default_rng(17)
    mq, lvq = np.array([0.3, -1.0, 2.0]), np.array([-0.5, 0.4, 0.0])
    mp, lvp = np.array([0.0, 0.5, 1.5]), np.array([0.2, 0.0, -0.3])
    n = 200_000
    x = mq + np.exp(0.5 * lvq) * rng.standard_normal((n, 3))

    def log_normal(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / np.exp(lv))

    log_ratio = np.sum(log_normal(x, mq, lvq) - log_normal(x, mp, lvp), axis=-1)
    mc, se = log_ratio.mean(), log_ratio.std() / math.sqrt(n)
    got = float(dv.gaussian_kl(_f32(mq), _f32(lvq), _f32(mp), _f32(lvp)))
    assert abs(got - mc) < 5 * se, (got, mc, se)


def test_gaussian_kl_precise_when_q_is_close_to_p():
    # expm1(d) - d keeps the d^2/2 term that exp(d) - 1 - d loses in float32.
    lvq = _f32([1e-3, -2e-3, 5e-4])
    want = 0.5 * np.sum(np.expm1(np.float64(lvq)) - np.float64(lvq))  # float64 reference
    np.testing.assert_allclose(dv.gaussian_kl(jnp.zeros(3), lvq), want, rtol=1e-4)


def test_gaussian_kl_extremes_have_no_nan():
    mq, lvq = _f32([1e4, 0.0, -3.0]), _f32([-1e4, 80.0, 0.0])
    value, grads = jax.value_and_grad(dv.gaussian_kl, argnums=(0, 1, 2, 3))(mq, lvq, 0.0, 0.0)
    assert bool(jnp.isfinite(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    # A log-variance ratio beyond float32 range gives +inf (the true value is > 1e38), not NaN.
    big = dv.gaussian_kl(jnp.zeros(1), _f32([1e4]))
    assert float(big) == math.inf
    g = jax.grad(lambda v: dv.gaussian_kl(jnp.zeros(1), v))(_f32([1e4]))
    assert not bool(jnp.any(jnp.isnan(g)))


def test_gaussian_kl_infinite_log_variances_give_their_limits():
    """Limits of the written formula (Kingma & Welling 2014, appendix B) as a log-variance goes
    to +-inf: KL -> +inf; equal means contribute 0 however small var_p is (0 / var_p = 0).
    inf - inf (both log-variances infinite with the same sign) is undefined: NaN, documented."""
    inf = math.inf
    cases = [  # (mean_q, logvar_q, mean_p, logvar_p) -> KL
        ((0.0, -inf, 0.0, 0.0), inf),   # q collapses to a point: -logvar_q -> +inf
        ((0.0, inf, 0.0, 0.0), inf),    # was inf - inf = NaN
        ((0.0, 0.0, 0.0, inf), inf),
        ((0.0, 0.0, 0.0, -inf), inf),   # p collapses: was NaN
        ((1.0, 0.0, 0.0, -inf), inf),
        ((0.0, inf, 0.0, -inf), inf),   # was NaN
        ((0.0, -300.0, 0.0, -300.0), 0.0),  # q == p; exp(300) overflows float32: was 0 * inf = NaN
        ((0.5, -300.0, 0.0, -300.0), inf),  # 0.25 e^300 > float32 max
    ]
    for (mq, lvq, mp, lvp), want in cases:
        args = [_f32([v]) for v in (mq, lvq, mp, lvp)]

        def total(*a):
            return jnp.sum(dv.gaussian_kl(*a))

        value, grads = jax.value_and_grad(total, argnums=(0, 1, 2, 3))(*args)
        assert float(value) == want, ((mq, lvq, mp, lvp), float(value))
        assert not any(bool(jnp.any(jnp.isnan(g))) for g in grads), ((mq, lvq, mp, lvp), grads)
    # The mean term where exp(-logvar_p / 2) overflows but the product does not: e^200 * 1e-30^2.
    got = float(dv.gaussian_kl(_f32([1e-30]), _f32([-200.0]), 0.0, _f32([-200.0])))
    np.testing.assert_allclose(got, 0.5 * math.exp(200.0 + 2 * math.log(1e-30)), rtol=1e-5)
    # Undefined forms stay NaN.
    assert math.isnan(float(dv.gaussian_kl(_f32([0.0]), _f32([inf]), 0.0, _f32([inf]))))
    assert math.isnan(float(dv.gaussian_kl(_f32([inf]), _f32([0.0]), _f32([inf]), 0.0)))


def test_gaussian_kl_shape_validation():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        dv.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="mean_p"):
        dv.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="logvar_p"):  # would enlarge q's shape
        dv.gaussian_kl(jnp.zeros(3), jnp.zeros(3), 0.0, jnp.zeros((2, 3)))
    assert dv.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)), axis=None).shape == ()


# ------------------------------------------------------------------------------------------
# Bernoulli KL.
# ------------------------------------------------------------------------------------------


def test_bernoulli_kl_matches_scipy_and_is_zero_at_equality():
    rho, rho_hat = np.array([0.05, 0.3, 0.9]), np.array([0.2, 0.3, 0.5])
    want = [stats.entropy([a, 1 - a], [b, 1 - b]) for a, b in zip(rho, rho_hat)]  # scipy
    np.testing.assert_allclose(dv.bernoulli_kl(_f32(rho), _f32(rho_hat)), want, rtol=1e-5)
    np.testing.assert_array_equal(dv.bernoulli_kl(0.05, _f32([0.05, 0.05])), 0.0)
    # A scalar target broadcasts into rho_hat's shape; rho_hat's shape is never enlarged.
    assert dv.bernoulli_kl(0.05, jnp.full((4, 3), 0.1)).shape == (4, 3)
    with pytest.raises(ValueError, match="rho"):
        dv.bernoulli_kl(jnp.full((2, 3), 0.1), jnp.full((3,), 0.1))


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_bernoulli_kl_static_probabilities_are_checked(bad):
    """A Python-number target outside [0, 1] is a ValueError (it gave NaN)."""
    with pytest.raises(ValueError, match="rho"):
        dv.bernoulli_kl(bad, jnp.full(3, 0.5))
    with pytest.raises(ValueError, match="rho_hat"):
        dv.bernoulli_kl(jnp.full(3, 0.5), bad)
    with pytest.raises(TypeError, match="rho"):
        dv.bernoulli_kl("0.3", jnp.full(3, 0.5))
    with pytest.raises(TypeError, match="rho"):
        dv.bernoulli_kl(True, jnp.full(3, 0.5))


def test_bernoulli_kl_at_degenerate_rho_hat():
    rho = _f32([0.3, 0.0, 1.0, 0.3, 0.0, 1.0])
    rho_hat = _f32([0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    value = dv.bernoulli_kl(rho, rho_hat)
    np.testing.assert_array_equal(value, [np.inf, 0.0, 0.0, np.inf, np.inf, np.inf])

    def total(a, b):
        return jnp.sum(dv.bernoulli_kl(a, b))

    g_rho, g_hat = jax.grad(total, argnums=(0, 1))(rho, rho_hat)
    assert not bool(jnp.any(jnp.isnan(g_rho))) and not bool(jnp.any(jnp.isnan(g_hat)))
    # Finite where the value is finite.
    assert bool(jnp.all(jnp.isfinite(g_hat[1:3])))


# ------------------------------------------------------------------------------------------
# Wasserstein.
# ------------------------------------------------------------------------------------------


def test_wasserstein_closed_forms():
    x = _f32([3.0, -1.0, 0.5, 2.0])
    np.testing.assert_array_equal(dv.wasserstein_1d(x, x[::-1]), 0.0)  # same sample, any order
    # Shifting every sample by c moves it by exactly |c| (monotone coupling).
    np.testing.assert_allclose(dv.wasserstein_1d(x, x + 1.5), 1.5, rtol=1e-6)
    np.testing.assert_allclose(dv.wasserstein_1d(x, x - 2.0), 2.0, rtol=1e-6)
    assert dv.wasserstein_1d(jnp.arange(3), jnp.arange(3) + 1).dtype == jnp.float32  # ints -> f32


def test_wasserstein_shape_validation():
    with pytest.raises(ValueError, match=r"x.*\(4,\).*y.*\(5,\)"):
        dv.wasserstein_1d(jnp.zeros(4), jnp.zeros(5))
    with pytest.raises(ValueError, match=r"\(\)"):
        dv.wasserstein_1d(jnp.zeros(()), jnp.zeros(()))
    with pytest.raises(ValueError, match="no samples"):
        dv.wasserstein_1d(jnp.zeros((0,)), jnp.zeros((0,)))
    with pytest.raises(TypeError, match="axis"):  # one sample axis: an int, not a tuple
        dv.wasserstein_1d(jnp.zeros(3), jnp.zeros(3), axis=(0,))
    with pytest.raises(ValueError, match="axis"):
        dv.wasserstein_1d(jnp.zeros(3), jnp.zeros(3), axis=1)


# ------------------------------------------------------------------------------------------
# Zeros, infinities and disjoint supports.
# ------------------------------------------------------------------------------------------


def test_zero_log_zero_is_zero():
    np.testing.assert_array_equal(dv.entropy(_f32([1.0, 0.0, 0.0])), 0.0)
    np.testing.assert_allclose(dv.entropy(_f32([0.5, 0.0, 0.5])), LOG2, rtol=1e-7)
    p = _f32([0.5, 0.5, 0.0])
    np.testing.assert_array_equal(dv.kl_divergence(p, p), 0.0)  # 0 log(0/0) = 0
    np.testing.assert_array_equal(dv.kl_divergence(_f32([1.0, 0.0]), _f32([1.0, 0.0])), 0.0)
    np.testing.assert_array_equal(dv.cross_entropy(_f32([1.0, 0.0]), _f32([1.0, 0.0])), 0.0)
    # Gradients at p == 0 are 0 (not NaN) for every function.
    for fn in (dv.kl_divergence, dv.cross_entropy, dv.js_divergence):
        gp, gq = jax.grad(fn, argnums=(0, 1))(p, p)
        assert bool(jnp.all(jnp.isfinite(gp))) and bool(jnp.all(jnp.isfinite(gq)))
    assert bool(jnp.all(jnp.isfinite(jax.grad(dv.entropy)(p))))


def test_kl_is_inf_where_q_vanishes_without_nan():
    p, q = _f32([0.5, 0.5, 0.0]), _f32([1.0, 0.0, 0.0])
    assert float(dv.kl_divergence(p, q)) == math.inf
    assert float(dv.cross_entropy(p, q)) == math.inf
    assert float(dv.kl_divergence(q, p)) == pytest.approx(LOG2)  # the other direction is finite
    for fn in (dv.kl_divergence, dv.cross_entropy):
        gp, gq = jax.grad(fn, argnums=(0, 1))(p, q)
        assert not bool(jnp.any(jnp.isnan(gp))) and not bool(jnp.any(jnp.isnan(gq)))
        assert float(gq[1]) == -math.inf  # d/dq of -p log q at q = 0 < p


@pytest.mark.parametrize(
    "p, q",
    [
        ([1.0, 0.0], [0.0, 1.0]),
        ([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.25, 0.75]),
        ([0.0, 0.125, 0.0, 0.875], [0.5, 0.0, 0.5, 0.0]),
    ],
)
def test_js_of_disjoint_supports_is_log2_exactly(p, q):
    js = dv.js_divergence(_f32(p), _f32(q))
    np.testing.assert_array_max_ulp(np.asarray(js), LOG2_F32, maxulp=1)
    bits = dv.js_divergence(_f32(p), _f32(q), base=2)
    np.testing.assert_array_max_ulp(np.asarray(bits), np.float32(1.0), maxulp=1)
    # The same from logits: disjoint up to float32 underflow.
    lp = np.where(np.asarray(p) > 0, np.log(np.maximum(p, 1e-30)), -1e4)
    lq = np.where(np.asarray(q) > 0, np.log(np.maximum(q, 1e-30)), -1e4)
    js = dv.js_divergence_from_logits(_f32(lp), _f32(lq))
    np.testing.assert_array_max_ulp(np.asarray(js), LOG2_F32, maxulp=1)


def test_js_of_random_disjoint_supports_is_log2():
    rng = np.random.default_rng(18)
    mask = rng.random((50, 16)) < 0.5
    p = _dirichlet(19, (50, 16)) * mask
    q = _dirichlet(20, (50, 16)) * ~mask
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    js = np.asarray(dv.js_divergence(_f32(p), _f32(q)))
    # Each term p_i log 2 is rounded separately: a few ulps at most.
    np.testing.assert_array_max_ulp(js, np.full(50, LOG2_F32), maxulp=4)


# ------------------------------------------------------------------------------------------
# Gradients: check_grads on interior points; finiteness at extreme logits.
# ------------------------------------------------------------------------------------------

_P = _f32(_dirichlet(21, (5,)) * 0.7 + 0.06)  # interior, away from 0 by more than eps
_Q = _f32(_dirichlet(22, (5,)) * 0.7 + 0.06)
_L1, _L2 = _f32([0.3, -1.2, 2.0, 0.1, -0.4]), _f32([1.1, 0.0, -0.5, 0.7, 0.2])
_JOINT = _f32(_dirichlet(23, (6,)) + 0.05).reshape(2, 3)
# Sorted pairs at least 0.3 apart: no ties and no sign change of x_(i) - y_(i) within eps.
_X, _Y = _f32([4.0, 0.0, 2.5, 1.0, 5.0]), _f32([0.6, 1.7, 3.1, 6.0, 8.0])

GRAD_CASES = {
    "entropy": (dv.entropy, (_P,)),
    "cross_entropy": (dv.cross_entropy, (_P, _Q)),
    "kl_divergence": (dv.kl_divergence, (_P, _Q)),
    "js_divergence": (dv.js_divergence, (_P, _Q)),
    "mutual_information": (dv.mutual_information, (_JOINT,)),
    "entropy_from_logits": (dv.entropy_from_logits, (_L1,)),
    "cross_entropy_from_logits": (dv.cross_entropy_from_logits, (_L1, _L2)),
    "kl_divergence_from_logits": (dv.kl_divergence_from_logits, (_L1, _L2)),
    "js_divergence_from_logits": (dv.js_divergence_from_logits, (_L1, _L2)),
    "bernoulli_kl": (dv.bernoulli_kl, (_P, _Q)),
    "gaussian_kl": (dv.gaussian_kl, (_L1, _L2 * 0.5, _L2, _L1 * 0.5)),
    "wasserstein_1d": (dv.wasserstein_1d, (_X, _Y)),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_check_grads_second_order(name):
    fn, args = GRAD_CASES[name]
    # Op by op: the many small transformed functions check_grads builds are not worth compiling.
    with jax.disable_jit():
        check_grads(fn, args, order=2, modes=["fwd", "rev"], eps=1e-3, atol=2e-3, rtol=2e-3)


EXTREME_LOGITS = [
    _f32([1e4, -1e4, 0.0, 3.0]),
    _f32([-1e4, -1e4, -1e4, 1e4]),
    _f32([1e4, 1e4, -1e4, -1e4]),
    _f32([1e4, 1e4, 1e4, 1e4]),
]
_Q4 = _f32([0.1, 0.2, 0.3, 0.4])
_ONE_HOT = _f32([0.0, 0.0, 0.0, 1.0])
sm = jax.nn.softmax

EXTREME_FNS = {
    # softmax output as p: q is strictly positive.
    "entropy(softmax)": lambda l: dv.entropy(sm(l)),
    "cross_entropy(softmax, q)": lambda l: dv.cross_entropy(sm(l), _Q4),
    "kl_divergence(softmax, q)": lambda l: dv.kl_divergence(sm(l), _Q4),
    "js_divergence(softmax, q)": lambda l: dv.js_divergence(sm(l), _Q4),
    # JS is finite even where the softmax underflows on both sides.
    "js_divergence(q, softmax)": lambda l: dv.js_divergence(_Q4, sm(l)),
    "js_divergence(softmax, softmax)": lambda l: dv.js_divergence(sm(l), sm(-l)),
    "mutual_information(softmax)": lambda l: dv.mutual_information(sm(l).reshape(2, 2)),
    # The logits variants are finite for any finite logits, on either side.
    "entropy_from_logits": dv.entropy_from_logits,
    "cross_entropy_from_logits(l, -l)": lambda l: dv.cross_entropy_from_logits(l, -l),
    "kl_divergence_from_logits(l, -l)": lambda l: dv.kl_divergence_from_logits(l, -l),
    "kl_divergence_from_logits(log q, l)": lambda l: dv.kl_divergence_from_logits(jnp.log(_Q4), l),
    "js_divergence_from_logits(l, -l)": lambda l: dv.js_divergence_from_logits(l, -l),
    # Labels as -inf logits: the usual softmax cross-entropy.
    "cross_entropy_from_logits(log onehot, l)": lambda l: dv.cross_entropy_from_logits(
        jnp.log(_ONE_HOT), l
    ),
}


@pytest.fixture(scope="module")
def extreme_results():
    """{name: (values [4], grads [4, 4])} for every case at every extreme logit vector.

    One compiled program for all cases (compiling them one by one costs more than the tests).
    """

    @jax.jit
    @jax.vmap
    def evaluate(logits):
        return {name: jax.value_and_grad(fn)(logits) for name, fn in EXTREME_FNS.items()}

    return evaluate(jnp.stack(EXTREME_LOGITS))


@pytest.mark.parametrize("name", sorted(EXTREME_FNS))
def test_extreme_logits_give_finite_values_and_gradients(name, extreme_results):
    values, grads = extreme_results[name]
    assert bool(jnp.all(jnp.isfinite(values))), (name, values)
    assert bool(jnp.all(jnp.isfinite(grads))), (name, grads)


def _js_grad_through_softmax_f64(logits, target, target_first):
    """Closed-form gradient of JS(softmax(l), t) (symmetric, so either order): with p = softmax(l)
    and m = (p + t) / 2, dJS/dp_i = log(p_i / m_i) / 2 (0 where p_i = 0), then the softmax
    Jacobian p_i (delta_ij - p_j). float64 NumPy."""
    del target_first  # JS is symmetric: the same gradient
    l = np.asarray(logits, np.float64)
    p = np.exp(l - l.max())
    p /= p.sum()
    t = np.asarray(target, np.float64)
    m = 0.5 * (p + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(p > 0, 0.5 * np.log(p / m), 0.0)
    return p * (g - np.sum(p * g))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("target_first", [False, True])
def test_js_divergence_gradient_through_a_saturated_softmax_is_finite(dtype, target_first):
    """Issue 15: js_divergence(softmax([30, -30, 0]), one-hot) had an inf/NaN gradient (the
    ratio form's derivative -p / m**2 with m**2 underflowing). JS <= log 2 has a finite
    gradient everywhere; in float32 it is the closed form (reference: the function above)."""
    target = jnp.asarray([1.0, 0.0, 0.0], dtype)
    for logits in ([30.0, -30.0, 0.0], [60.0, 0.0, -40.0], [0.0, -85.0, -5.0]):
        l = jnp.asarray(logits, dtype)

        def js(l):
            p = sm(l)
            out = dv.js_divergence(target, p) if target_first else dv.js_divergence(p, target)
            return out.astype(jnp.float32)

        value, grad = jax.value_and_grad(js)(l)
        assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad))), (logits, grad)
        if dtype == jnp.float32:
            want = _js_grad_through_softmax_f64(logits, [1.0, 0.0, 0.0], target_first)
            np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-4, atol=1e-30)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_mutual_information_gradient_with_a_tiny_marginal_is_finite(dtype):
    """A row and a column of the joint table with totals ~1e-13 and ~1e-27 (a saturated
    softmax): XLA turned (p / p(x)) / p(y) into p / (p(x) p(y)), whose product underflowed (an
    inf value, NaN gradients). Reference value: I = sum p log(p / (p(x) p(y))) in float64."""
    logits = jnp.asarray([0.0, -62.0, -30.0, -62.0], dtype)

    def mi(l):
        return dv.mutual_information(sm(l).reshape(2, 2)).astype(jnp.float32)

    value, grad = jax.value_and_grad(mi)(logits)
    assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad))), (value, grad)
    if dtype == jnp.float32:
        p = np.exp(np.float64([0.0, -62.0, -30.0, -62.0]))
        p = (p / p.sum()).reshape(2, 2)
        want = np.sum(p * np.log(p / (p.sum(1, keepdims=True) * p.sum(0, keepdims=True))))
        np.testing.assert_allclose(float(value), want, atol=1e-7)  # float32 resolution at 1


def test_kl_through_softmax_when_q_underflows_where_p_is_zero():
    # q = softmax(l) underflows to 0 only where p = 0: value and gradients stay finite.
    logits = _f32([-1e4, 0.0, -1e4, 1e4])
    for fn in (dv.kl_divergence, dv.cross_entropy):
        value, grad = jax.jit(jax.value_and_grad(lambda l, fn=fn: fn(_ONE_HOT, sm(l))))(logits)
        assert float(value) == 0.0 and bool(jnp.all(jnp.isfinite(grad)))
    # Where q underflows under p > 0 the probability form can only say +inf; the logits form
    # gives the finite answer (log q_0 = -2e4 exactly) with a finite gradient q - p.
    assert float(dv.kl_divergence(_Q4, sm(logits))) == math.inf
    def kl_from_logits(logits_q):
        return dv.kl_divergence_from_logits(jnp.log(_Q4), logits_q)

    value, grad = jax.jit(jax.value_and_grad(kl_from_logits))(logits)
    assert bool(jnp.isfinite(value)) and float(value) > 1e3
    np.testing.assert_allclose(grad, sm(logits) - _Q4, atol=1e-6)


def test_logits_variants_agree_with_probability_versions():
    rng = np.random.default_rng(24)
    l1, l2 = _f32(rng.normal(size=_SHAPE)), _f32(rng.normal(size=_SHAPE))
    p, q = sm(l1), sm(l2)
    np.testing.assert_allclose(dv.entropy_from_logits(l1, base=2), dv.entropy(p, base=2), rtol=1e-5)
    for name, fn in LOGIT_PAIR_FNS.items():
        prob_fn = PROB_PAIR_FNS[name.removesuffix("_from_logits")]
        np.testing.assert_allclose(fn(l1, l2), prob_fn(p, q), rtol=1e-5, atol=1e-7)
    # Labels as logits: -log_softmax(l)[label].
    np.testing.assert_allclose(
        dv.cross_entropy_from_logits(jnp.log(_ONE_HOT), l1[0, :4]),
        -jax.nn.log_softmax(l1[0, :4])[3],
        rtol=1e-6,
    )


# ------------------------------------------------------------------------------------------
# Dtypes, jit, vmap, recompilation.
# ------------------------------------------------------------------------------------------

_BP, _BQ = _dirichlet(26, _SHAPE), _dirichlet(27, _SHAPE)
DTYPE_CASES = {
    "entropy": (dv.entropy, (_BP,)),
    "cross_entropy": (dv.cross_entropy, (_BP, _BQ)),
    "kl_divergence": (dv.kl_divergence, (_BP, _BQ)),
    "js_divergence": (dv.js_divergence, (_BP, _BQ)),
    "mutual_information": (dv.mutual_information, (_BP[:, :6].reshape(3, 2, 3),)),
    "entropy_from_logits": (dv.entropy_from_logits, (np.log(_BP),)),
    "kl_divergence_from_logits": (dv.kl_divergence_from_logits, (np.log(_BP), np.log(_BQ))),
    "js_divergence_from_logits": (dv.js_divergence_from_logits, (np.log(_BP), np.log(_BQ))),
    "bernoulli_kl": (dv.bernoulli_kl, (_BP, _BQ)),
    "gaussian_kl": (dv.gaussian_kl, (_BP, _BQ - 0.5, _BQ, _BP - 0.5)),
    "wasserstein_1d": (dv.wasserstein_1d, (_BP * 10, _BQ * 10)),
}


@pytest.mark.parametrize(
    "name, dtype",
    [(name, jnp.bfloat16) for name in sorted(DTYPE_CASES)]
    + [(name, jnp.float16) for name in ("entropy", "kl_divergence", "gaussian_kl")],
)
def test_half_precision_inputs(name, dtype):
    # Half-precision inputs are computed in float32 and returned in the input dtype: the result
    # is the float32 result (on the same, rounded inputs) rounded once.
    fn, args = DTYPE_CASES[name]
    half = [jnp.asarray(a, dtype) for a in args]
    out = fn(*half)
    ref = fn(*[a.astype(jnp.float32) for a in half])
    assert out.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(out)))
    rel = 2.0 ** -(8 if dtype == jnp.bfloat16 else 11)  # half an ulp, relative
    np.testing.assert_allclose(np.float32(out), ref, rtol=rel, atol=1e-6)


def test_python_scalar_parameters_keep_the_half_precision_dtype():
    """A Python-number argument (the default p = N(0, 1) of gaussian_kl, a sparsity target) is
    weakly typed: bfloat16/float16 data give a result in that dtype, not float32."""
    for dtype in (jnp.bfloat16, jnp.float16):
        x = jnp.full((2, 3), 0.25, dtype)
        assert dv.gaussian_kl(x, x).dtype == dtype
        assert dv.gaussian_kl(x, x, 1.0, 0.5).dtype == dtype
        assert dv.bernoulli_kl(0.05, x).dtype == dtype


def test_integer_inputs_become_float_and_bad_inputs_raise():
    counts = jnp.array([1, 0, 0])
    out = dv.entropy(counts)
    assert out.dtype == jnp.float32 and float(out) == 0.0
    assert dv.kl_divergence([1, 0], [1, 0]).dtype == jnp.float32  # lists are accepted
    with pytest.raises(TypeError, match="p"):
        dv.entropy(jnp.array([0.5 + 0j, 0.5]))
    with pytest.raises(TypeError, match="q"):
        dv.kl_divergence(jnp.ones(2) / 2, "ab")


def test_float64_inputs_stay_float64():
    with jax.enable_x64(True):
        p, q = jnp.asarray(_dirichlet(28, (9,))), jnp.asarray(_dirichlet(29, (9,)))
        kl = dv.kl_divergence(p, q)
        assert kl.dtype == jnp.float64
        np.testing.assert_allclose(kl, stats.entropy(np.asarray(p), np.asarray(q)), rtol=1e-12)


def test_strict_dtype_and_rank_promotion():
    # As in suites that turn on strict promotion (equinox): no implicit promotion inside.
    # bfloat16 is where a stray float32 constant would promote. Promotion errors are raised while
    # tracing, so eval_shape (trace only, no compilation) is enough, for values and gradients.
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        for name, (fn, args) in DTYPE_CASES.items():
            args = [jnp.asarray(a, jnp.bfloat16) for a in args]
            assert jax.eval_shape(fn, *args).dtype == jnp.bfloat16, name

            def total(*a, fn=fn):
                return jnp.sum(fn(*a).astype(jnp.float32))

            grads = jax.eval_shape(jax.grad(total, argnums=tuple(range(len(args)))), *args)
            assert all(g.dtype == jnp.bfloat16 for g in grads), name
        # Python-scalar and lower-rank parameters broadcast explicitly, not by promotion.
        q = jnp.asarray(_BQ, jnp.bfloat16)
        assert dv.bernoulli_kl(0.05, q).shape == q.shape
        assert dv.gaussian_kl(q, q, jnp.zeros(7, jnp.bfloat16), 0.0).shape == (3,)
        assert dv.entropy(jnp.array([1, 0, 0])).dtype == jnp.float32  # ints, no promotion needed


@pytest.mark.parametrize("name", sorted({**PROB_PAIR_FNS, **LOGIT_PAIR_FNS}))
def test_pair_shapes_must_match(name):
    fn = {**PROB_PAIR_FNS, **LOGIT_PAIR_FNS}[name]
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        fn(jnp.ones(3) / 3, jnp.ones(4) / 4)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):  # no silent broadcasting
        fn(jnp.ones((2, 3)) / 3, jnp.ones(3) / 3)


def test_axis_argument():
    p, q = _f32(_dirichlet(30, (4, 5))), _f32(_dirichlet(31, (4, 5)))
    np.testing.assert_allclose(
        dv.kl_divergence(p.T, q.T, axis=0), dv.kl_divergence(p, q), rtol=1e-6
    )
    joint_p, joint_q = p / 4, q / 4  # one distribution over all 20 cells
    np.testing.assert_allclose(
        dv.kl_divergence(joint_p, joint_q, axis=None),
        dv.kl_divergence(joint_p.ravel(), joint_q.ravel()),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        dv.entropy(joint_p, axis=(0, 1)), dv.entropy(joint_p, axis=None), rtol=1e-6
    )
    for bad in (2, -3, (0, 0)):
        with pytest.raises(ValueError, match="axis"):
            dv.entropy(p, axis=bad)
    for bad in (1.0, "x", True):  # not ints: a TypeError (genjax._checks.axes)
        with pytest.raises(TypeError, match="axis"):
            dv.entropy(p, axis=bad)
    with pytest.raises(ValueError, match="axis"):
        dv.entropy(jnp.array(1.0))  # a scalar has no event axis


@pytest.mark.parametrize("name", sorted(DTYPE_CASES))
def test_jit_of_vmap_agrees_with_eager(name):
    fn, args = DTYPE_CASES[name]
    args = [_f32(a) for a in args]
    eager = fn(*args)
    batched = jax.jit(jax.vmap(fn))(*args)  # maps over the leading (batch) axis of size 3
    assert batched.shape == eager.shape
    np.testing.assert_allclose(batched, eager, rtol=1e-6, atol=1e-7)


def test_jitted_call_does_not_retrace():
    traces = []

    @jax.jit
    def loss(p, q):
        traces.append(None)
        return dv.kl_divergence(p, q, base=2) + dv.js_divergence(p, q)

    loss(_f32(_BP), _f32(_BQ))
    loss(_f32(_BQ), _f32(_BP))
    assert len(traces) == 1


# The doctests, `__all__` and the light import of this module: tests/test_math_modules.py.
