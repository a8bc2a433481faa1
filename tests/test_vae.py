"""Tests for genjax.vae and the VAE modules of genjax.nn.

Reference values name their source: the ELBO written out in NumPy float64 (Kingma & Welling 2014,
eq. 10 and Appendix B), scipy.special.logsumexp, and a linear-Gaussian model whose evidence,
posterior and ELBO are known in closed form (scipy.stats.multivariate_normal for log p(x); the
Gaussian conditioning formulas, e.g. Bishop, PRML (2006), eqs. 2.113-2.117).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special, stats

from genjax import vae

F32 = jnp.float32


def _f32(x):
    return jnp.asarray(x, F32)


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------
# The ELBO against the written-out formula.
# ------------------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
_B, _D = 4, 3
_X01 = (_RNG.random((_B, 5, 2)) < 0.4).astype(np.float64)  # binary "images" [B, 5, 2]
_LOGITS = _RNG.normal(size=(_B, 5, 2)) * 2
_MEAN = _RNG.normal(size=(_B, _D))
_LOGVAR = _RNG.normal(size=(_B, _D)) * 0.5
_XC = _RNG.normal(size=(_B, 5, 2))  # continuous data for the Gaussian likelihood


def _np_kl(m, lv):
    # KL(N(m, e^lv) || N(0, 1)) summed over the latent axis: Kingma & Welling (2014), Appendix B.
    return 0.5 * np.sum(np.exp(lv) + m**2 - 1.0 - lv, axis=-1)


def test_bernoulli_elbo_matches_the_written_out_formula():
    p = _np_sigmoid(_LOGITS)
    rec = np.sum(_X01 * np.log(p) + (1 - _X01) * np.log(1 - p), axis=(1, 2))
    ref = rec - _np_kl(_MEAN, _LOGVAR)
    out = vae.elbo(_f32(_X01), _f32(_LOGITS), _f32(_MEAN), _f32(_LOGVAR))
    assert out.shape == (_B,) and out.dtype == F32
    np.testing.assert_allclose(out, ref, rtol=1e-5)
    # beta weights the KL only (Higgins et al. 2017, eq. 4).
    out_beta = vae.elbo(_f32(_X01), _f32(_LOGITS), _f32(_MEAN), _f32(_LOGVAR), beta=4.0)
    np.testing.assert_allclose(out_beta, rec - 4.0 * _np_kl(_MEAN, _LOGVAR), rtol=1e-5)
    np.testing.assert_allclose(vae.log_likelihood(_f32(_X01), _f32(_LOGITS)), rec, rtol=1e-5)


def test_gaussian_elbo_unit_fixed_and_learned_variance():
    kl = _np_kl(_MEAN, _LOGVAR)

    def ref(s):  # log N(x; mu, e^s) summed over the event
        return np.sum(-0.5 * (np.log(2 * np.pi) + s + (_XC - _LOGITS) ** 2 / np.exp(s)), axis=(1, 2)) - kl

    args = (_f32(_XC), _f32(_LOGITS), _f32(_MEAN), _f32(_LOGVAR))
    np.testing.assert_allclose(vae.elbo(*args, likelihood="gaussian"), ref(0.0), rtol=1e-5)
    np.testing.assert_allclose(vae.elbo(*args, likelihood="gaussian", decoder_logvar=math.log(0.1)),
                               ref(math.log(0.1)), rtol=1e-5)
    learned = _RNG.normal(size=_XC.shape) * 0.3
    np.testing.assert_allclose(vae.elbo(*args, likelihood="gaussian", decoder_logvar=_f32(learned)),
                               ref(learned), rtol=1e-5)


def test_score_function_elbo_has_the_elbo_as_its_value():
    z = _f32(_RNG.normal(size=(_B, _D)))
    args = (_f32(_X01), _f32(_LOGITS))
    np.testing.assert_allclose(vae.score_function_elbo(*args, z, _f32(_MEAN), _f32(_LOGVAR), baseline=-30.0),
                               vae.elbo(*args, _f32(_MEAN), _f32(_LOGVAR)), rtol=1e-6)


def test_diag_gaussian_log_prob_matches_scipy():
    z = _RNG.normal(size=(2, _B, _D))
    ref = np.sum(stats.norm(_MEAN, np.exp(0.5 * _LOGVAR)).logpdf(z), axis=-1)  # scipy.stats.norm
    np.testing.assert_allclose(vae.diag_gaussian_log_prob(_f32(z), _f32(_MEAN), _f32(_LOGVAR)), ref, rtol=1e-5)
    np.testing.assert_allclose(vae.diag_gaussian_log_prob(_f32(z)), np.sum(stats.norm.logpdf(z), -1), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# The reparameterization trick.
# ------------------------------------------------------------------------------------------


def test_reparameterize_moments_and_derivatives():
    mean, logvar = _f32([1.5, -2.0, 0.0]), _f32([0.0, math.log(4.0), math.log(0.01)])
    n = 200_000
    z = np.asarray(vae.reparameterize(jax.random.key(0), mean, logvar, (n,)), np.float64)
    assert z.shape == (n, 3)
    std = np.exp(0.5 * np.asarray(logvar, np.float64))
    # Sample mean within 5 standard errors; sample variance within 5 s.e. of a normal variance
    # (s.e. of s^2 is sigma^2 sqrt(2 / n)).
    np.testing.assert_array_less(np.abs(z.mean(0) - np.asarray(mean)), 5 * std / math.sqrt(n))
    np.testing.assert_array_less(np.abs(z.var(0) - std**2), 5 * std**2 * math.sqrt(2 / n))
    # dz/dmean = I and dz/dlogvar = diag((z - mean) / 2): the noise does not depend on them.
    key = jax.random.key(1)
    jm = jax.jacfwd(lambda m: vae.reparameterize(key, m, logvar))(mean)
    np.testing.assert_array_equal(jm, np.eye(3))
    zk = vae.reparameterize(key, mean, logvar)
    jl = jax.jacrev(lambda lv: vae.reparameterize(key, mean, lv))(logvar)
    np.testing.assert_allclose(jl, np.diag((zk - mean) / 2), rtol=1e-6, atol=1e-7)
    # Same key, same draw; another key, another draw.
    np.testing.assert_array_equal(vae.reparameterize(key, mean, logvar), zk)
    assert not np.allclose(vae.reparameterize(jax.random.key(2), mean, logvar), zk)


def test_reparameterize_validation():
    with pytest.raises(ValueError, match=r"`mean` and `logvar` must have the same shape.*\(2, 3\).*\(3,\)"):
        vae.reparameterize(jax.random.key(0), jnp.zeros((2, 3)), jnp.zeros(3))
    with pytest.raises(TypeError, match="`key` must be a PRNG key"):
        vae.reparameterize(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="sample_shape"):
        vae.reparameterize(jax.random.key(0), jnp.zeros(3), jnp.zeros(3), (-1,))
    assert vae.reparameterize(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros(3)).shape == (3,)  # raw keys too


# ------------------------------------------------------------------------------------------
# A linear-Gaussian model: log p(x), the posterior and the ELBO in closed form.
#   p(z) = N(0, I_2),  p(x | z) = N(W z + b, s2 I_3),  so  p(x) = N(b, W W^T + s2 I)  and
#   p(z | x) = N(mu, P),  P = (I + W^T W / s2)^-1,  mu = P W^T (x - b) / s2.
# The mean-field (diagonal) q that maximises the ELBO, i.e. minimises the reverse KL(q || p(z|x)),
# has mean mu and variances 1 / diag(P^-1) < diag(P): it under-covers the correlated posterior,
# so its ELBO is strictly below log p(x).
# ------------------------------------------------------------------------------------------

_W = np.array([[1.0, 0.8], [0.5, 1.2], [-0.3, 0.9]])
_BIAS = np.array([0.1, -0.2, 0.3])
_S2 = 0.25
_XLG = np.array([1.0, 0.5, -0.4])
_LOG_PX = stats.multivariate_normal(_BIAS, _W @ _W.T + _S2 * np.eye(3)).logpdf(_XLG)  # scipy
_PREC = np.eye(2) + _W.T @ _W / _S2
_POST_COV = np.linalg.inv(_PREC)
_POST_MEAN = _POST_COV @ _W.T @ (_XLG - _BIAS) / _S2
_MF_LOGVAR = np.log(1.0 / np.diag(_PREC))  # the mean-field optimum of the reverse KL


def _closed_form_elbo(m, lv):
    """E_q log p(x|z) - KL(q || p(z)) for q = N(m, diag(e^lv)), in jnp (differentiable)."""
    w, b, x = jnp.asarray(_W), jnp.asarray(_BIAS), jnp.asarray(_XLG)
    v = jnp.exp(lv)
    resid = x - w @ m - b
    e_rec = -1.5 * jnp.log(2 * jnp.pi * _S2) - (resid @ resid + jnp.sum((w**2) @ v)) / (2 * _S2)
    return e_rec - 0.5 * jnp.sum(v + m**2 - 1.0 - lv)


def _decode(z):
    return z @ _f32(_W).T + _f32(_BIAS)


def _gaussian_kl_full(m0, c0, m1, c1):
    """KL(N(m0, c0) || N(m1, c1)) for full covariances (closed form)."""
    c1i = np.linalg.inv(c1)
    d = m1 - m0
    return 0.5 * (np.trace(c1i @ c0) + d @ c1i @ d - len(m0) + np.log(np.linalg.det(c1) / np.linalg.det(c0)))


def test_closed_form_elbo_is_log_px_minus_the_reverse_kl():
    # The identity the chapter derives: log p(x) = ELBO + KL(q || p(z | x)).
    with jax.enable_x64(True):
        elbo = float(_closed_form_elbo(jnp.asarray(_POST_MEAN), jnp.asarray(_MF_LOGVAR)))
    kl = _gaussian_kl_full(_POST_MEAN, np.diag(np.exp(_MF_LOGVAR)), _POST_MEAN, _POST_COV)
    assert elbo + kl == pytest.approx(_LOG_PX, abs=1e-10)
    assert kl > 0.1  # a visible gap: the posterior is correlated, q is diagonal


def test_monte_carlo_elbo_is_below_log_px_and_iwae_rises_to_it():
    n = 200  # independent replicates of each estimate, on the batch axis
    x = jnp.broadcast_to(_f32(_XLG), (n, 3))
    m = jnp.broadcast_to(_f32(_POST_MEAN), (n, 2))
    lv = jnp.broadcast_to(_f32(_MF_LOGVAR), (n, 2))
    z = vae.reparameterize(jax.random.key(3), m, lv)
    mc_elbo = vae.elbo(x, _decode(z), m, lv, "gaussian", decoder_logvar=math.log(_S2))  # [n]
    exact_elbo = float(_closed_form_elbo(_f32(_POST_MEAN), _f32(_MF_LOGVAR)))
    se = float(np.std(mc_elbo) / math.sqrt(n))
    assert float(jnp.mean(mc_elbo)) == pytest.approx(exact_elbo, abs=5 * se)
    assert exact_elbo < _LOG_PX - 0.1

    def encode(x_):
        return m[: x_.shape[0]], lv[: x_.shape[0]]

    bounds, spread = {}, {}
    for k, chunk in ((1, 1), (10, 10), (100, 100), (5000, 1000)):
        estimate = jax.jit(lambda key, k=k, chunk=chunk: vae.estimate_log_likelihood(
            key, encode, _decode, x, k, chunk_size=chunk, likelihood="gaussian", decoder_logvar=math.log(_S2)))
        est = estimate(jax.random.key(k))
        assert est.shape == (n,)
        bounds[k], spread[k] = float(jnp.mean(est)), float(jnp.std(est)) / math.sqrt(n)
    # L_1 is the ELBO (in expectation); L_k rises with k (Burda et al. 2016, Theorem 1) ...
    assert bounds[1] == pytest.approx(exact_elbo, abs=5 * spread[1])
    assert bounds[1] < bounds[10] < bounds[100] < bounds[5000]
    # ... and reaches log p(x): within 1% of the ELBO's gap, up to Monte Carlo error.
    assert abs(_LOG_PX - bounds[5000]) < 0.01 * (_LOG_PX - exact_elbo) + 5 * spread[5000]


def test_both_gradient_estimators_agree_in_expectation():
    # At a q away from the optimum, the exact gradient of the closed-form ELBO with respect to
    # (mean, logvar) against the averages of single-sample reparameterization and
    # score-function gradients; each within 5 of its own standard errors (per coordinate).
    m0, lv0 = _f32(_POST_MEAN + np.array([0.4, -0.3])), _f32([0.3, -1.0])
    exact = jax.grad(_closed_form_elbo, argnums=(0, 1))(m0, lv0)
    x = _f32(_XLG)[None]

    def one(key, estimator):
        def objective(m, lv):
            m_, lv_ = m[None], lv[None]
            z = vae.reparameterize(key, m_, lv_)
            if estimator == "score":
                z = jax.lax.stop_gradient(z)
                return vae.score_function_elbo(x, _decode(z), z, m_, lv_, "gaussian",
                                               decoder_logvar=math.log(_S2))[0]
            return vae.elbo(x, _decode(z), m_, lv_, "gaussian", decoder_logvar=math.log(_S2))[0]

        return jnp.concatenate(jax.grad(objective, argnums=(0, 1))(m0, lv0))

    exact = np.concatenate([np.asarray(g) for g in exact])
    variances = {}
    for estimator, n in (("reparameterization", 20_000), ("score", 200_000)):
        keys = jax.random.split(jax.random.key(7), n)
        grads = np.asarray(jax.jit(jax.vmap(lambda k: one(k, estimator)))(keys), np.float64)  # [n, 4]
        se = grads.std(0) / math.sqrt(n)
        np.testing.assert_array_less(np.abs(grads.mean(0) - exact), 5 * se + 1e-4)
        variances[estimator] = grads.var(0).sum()
    # The point of the trick: the score-function estimator is noisier (8x in this tiny model,
    # 10^4x for the MNIST encoders of experiments.vae).
    assert variances["score"] > 3 * variances["reparameterization"]


def test_score_function_gives_the_decoder_its_ordinary_gradient():
    # For the same sample, both surrogates give the decoder (here W) the same gradient.
    key = jax.random.key(4)
    m, lv, x = _f32(_MEAN[:, :2]), _f32(_LOGVAR[:, :2]), _f32(_RNG.normal(size=(_B, 3)))
    z = jax.lax.stop_gradient(vae.reparameterize(key, m, lv))

    def surrogate(w, fn):
        out = z @ w.T
        if fn is vae.elbo:
            return jnp.sum(fn(x, out, m, lv, "gaussian"))
        return jnp.sum(fn(x, out, z, m, lv, "gaussian"))

    w = _f32(_W)
    np.testing.assert_allclose(jax.grad(surrogate)(w, vae.elbo), jax.grad(surrogate)(w, vae.score_function_elbo),
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------
# The IWAE bound.
# ------------------------------------------------------------------------------------------


def test_iwae_bound_matches_scipy_logsumexp_and_is_stable():
    for lw in (_RNG.normal(size=(7, 3)) * 10, np.array([[1e4, -1e4], [1e4 - 1, -1e4 + 2]]),
               np.array([[-1e30], [-1e30]])):
        ref = special.logsumexp(lw, axis=0) - math.log(lw.shape[0])  # scipy
        np.testing.assert_allclose(vae.iwae_bound(_f32(lw)), ref, rtol=1e-6)
    assert float(vae.iwae_bound(_f32([[-np.inf], [0.0]]))[0]) == pytest.approx(-math.log(2))
    lw1 = _f32(_RNG.normal(size=(1, 5)))
    np.testing.assert_array_equal(vae.iwae_bound(lw1), lw1[0])  # k = 1: the ELBO estimate itself
    # Gradients at extreme log weights: the normalised importance weights, finite.
    g = jax.grad(lambda lw: jnp.sum(vae.iwae_bound(lw)))(_f32([[1e4, -1e4], [-1e4, 1e4]]))
    np.testing.assert_allclose(g, [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="k >= 1"):
        vae.iwae_bound(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="k >= 1"):
        vae.iwae_bound(jnp.float32(1.0))


def test_iwae_log_weights_formula_and_shapes():
    k = 6
    z = vae.reparameterize(jax.random.key(5), _f32(_MEAN), _f32(_LOGVAR), (k,))  # [k, B, D]
    logits = _f32(_RNG.normal(size=(k, *_X01.shape)))
    lw = vae.iwae_log_weights(_f32(_X01), logits, z, _f32(_MEAN), _f32(_LOGVAR))
    assert lw.shape == (k, _B)
    ref = (np.asarray(vae.log_likelihood(jnp.broadcast_to(_f32(_X01), logits.shape), logits, event_ndim=2))
           + np.asarray(vae.diag_gaussian_log_prob(z)) - np.asarray(vae.diag_gaussian_log_prob(z, _MEAN, _LOGVAR)))
    np.testing.assert_allclose(lw, ref, rtol=1e-5)
    # With one sample, the mean of the log weights over q is the ELBO with an analytic KL: check
    # E_q[log p(z) - log q(z|x)] = -KL by Monte Carlo.
    zs = vae.reparameterize(jax.random.key(6), _f32(_MEAN), _f32(_LOGVAR), (50_000,))
    neg_kl = jnp.mean(vae.diag_gaussian_log_prob(zs) - vae.diag_gaussian_log_prob(zs, _MEAN, _LOGVAR), axis=0)
    np.testing.assert_allclose(neg_kl, -_np_kl(_MEAN, _LOGVAR), atol=0.05)
    with pytest.raises(ValueError, match=r"`z` must have shape \[\*sample, \*mean.shape\]"):
        vae.iwae_log_weights(_f32(_X01), logits, z[..., :2], _f32(_MEAN), _f32(_LOGVAR))
    with pytest.raises(ValueError, match=r"`decoder_out` must have shape \[\*sample, \*x.shape\]"):
        vae.iwae_log_weights(_f32(_X01), logits[:, :2], z, _f32(_MEAN), _f32(_LOGVAR))


def test_sample_iwae_log_weights_learned_variance_and_validation():
    x = _f32(_RNG.normal(size=(3, 4)))

    def encode(x_):
        return jnp.zeros((x_.shape[0], 2)), jnp.zeros((x_.shape[0], 2))

    # q = p(z), and a decoder that ignores z: every weight is exactly log N(x; 0, e^s).
    s = math.log(0.5)
    lw = vae.sample_iwae_log_weights(jax.random.key(0), encode,
                                     lambda z: (jnp.zeros((z.shape[0], 4)), jnp.full((z.shape[0], 4), s)),
                                     x, 8, chunk_size=4, likelihood="gaussian")
    ref = np.sum(stats.norm(0, math.sqrt(0.5)).logpdf(np.asarray(x)), axis=-1)  # scipy
    np.testing.assert_allclose(lw, np.broadcast_to(ref, (8, 3)), rtol=1e-5)
    dec = lambda z: jnp.zeros((z.shape[0], 4))  # noqa: E731
    with pytest.raises(ValueError, match="multiple of `chunk_size`"):
        vae.sample_iwae_log_weights(jax.random.key(0), encode, dec, x, 10, chunk_size=4)
    with pytest.raises(ValueError, match=r"`num_samples` must be an int in \[1, inf\], got 0"):
        vae.estimate_log_likelihood(jax.random.key(0), encode, dec, x, 0)
    with pytest.raises(ValueError, match="only for likelihood='gaussian'"):
        vae.sample_iwae_log_weights(jax.random.key(0), encode, lambda z: (dec(z), dec(z)), x, 2)


# ------------------------------------------------------------------------------------------
# Validation, gradients, extremes, dtypes, compilation.
# ------------------------------------------------------------------------------------------


def test_shape_and_option_validation():
    x, out, m, lv = _f32(_X01), _f32(_LOGITS), _f32(_MEAN), _f32(_LOGVAR)
    with pytest.raises(ValueError, match=r"`decoder_out` must have shape x.shape"):
        vae.elbo(x, out[:, :3], m, lv)
    with pytest.raises(ValueError, match=r"`x` must have the batch shape \(4,\) of `mean`"):
        vae.elbo(x[:3], out[:3], m, lv)  # a batch of 3 images against 4 posteriors: no broadcasting
    with pytest.raises(ValueError, match="`likelihood` must be one of"):
        vae.elbo(x, out, m, lv, likelihood="poisson")
    with pytest.raises(ValueError, match="only used with likelihood='gaussian'"):
        vae.elbo(x, out, m, lv, decoder_logvar=0.0)
    with pytest.raises(ValueError, match="`decoder_logvar` with shape \\(3,\\)"):
        vae.elbo(x, out, m, lv, likelihood="gaussian", decoder_logvar=jnp.zeros(3))
    with pytest.raises(ValueError, match="`beta` must be a scalar"):
        vae.elbo(x, out, m, lv, beta=jnp.ones(2))
    with pytest.raises(ValueError, match="`baseline` with shape"):
        vae.score_function_elbo(x, out, m, m, lv, baseline=jnp.zeros(3))
    with pytest.raises(TypeError, match="`x` must"):
        vae.elbo("abc", out, m, lv)
    with pytest.raises(ValueError, match="event_ndim"):
        vae.log_likelihood(x, out, event_ndim=4)


def test_batch_of_one_and_of_zero():
    x, out = _f32(_X01[:1]), _f32(_LOGITS[:1])
    assert vae.elbo(x, out, _f32(_MEAN[:1]), _f32(_LOGVAR[:1])).shape == (1,)
    empty = vae.elbo(jnp.zeros((0, 5, 2)), jnp.zeros((0, 5, 2)), jnp.zeros((0, 3)), jnp.zeros((0, 3)))
    assert empty.shape == (0,)


_GRAD_ARGS = (_f32(_X01[:2]), _f32(_LOGITS[:2] * 0.5), _f32(_MEAN[:2]), _f32(_LOGVAR[:2]))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_check_grads(likelihood):
    x, out, m, lv = _GRAD_ARGS
    with jax.disable_jit():
        check_grads(lambda o, m, lv: vae.elbo(x, o, m, lv, likelihood), (out, m, lv), order=2,
                    modes=["fwd", "rev"], eps=1e-3, atol=2e-2, rtol=2e-2)
        check_grads(vae.iwae_bound, (_f32(_RNG.normal(size=(5, 3))),), order=2, modes=["fwd", "rev"],
                    eps=1e-3, atol=2e-2, rtol=2e-2)
        check_grads(lambda z, m, lv: vae.diag_gaussian_log_prob(z, m, lv), (m * 0.5, m, lv), order=2,
                    modes=["fwd", "rev"], eps=1e-3, atol=2e-2, rtol=2e-2)


def test_extreme_inputs_give_finite_values_and_gradients():
    x = _f32([[1.0, 0.0, 1.0, 0.0]])
    logits = _f32([[1e4, -1e4, -1e4, 1e4]])  # two certain hits, two certain misses
    m, lv = _f32([[30.0, -30.0]]), _f32([[-30.0, 30.0]])

    def f(o, m, lv):
        return jnp.sum(vae.elbo(x, o, m, lv)) + jnp.sum(vae.iwae_bound(jnp.stack([o[0], -o[0]])))

    value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))(logits, m, lv)
    assert bool(jnp.isfinite(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    # The certain misses cost 1e4 nats each: log sigmoid(-1e4) = -1e4 exactly, no overflow.
    assert float(vae.log_likelihood(x, logits)[0]) == pytest.approx(-2e4, rel=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_inputs_compute_in_float32(dtype):
    half = [jnp.asarray(a, dtype) for a in (_X01, _LOGITS, _MEAN, _LOGVAR)]
    out = vae.elbo(*half)
    assert out.dtype == F32
    np.testing.assert_allclose(out, vae.elbo(*[a.astype(F32) for a in half]), rtol=1e-6)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        assert jax.eval_shape(lambda *a: vae.elbo(*a, beta=0.5), *half).dtype == F32
        assert jax.eval_shape(lambda *a: vae.elbo(*a, "gaussian", decoder_logvar=jnp.zeros((), dtype)),
                              *half).dtype == F32


def test_jit_vmap_and_no_retrace():
    args = (_f32(_X01), _f32(_LOGITS), _f32(_MEAN), _f32(_LOGVAR))
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda *a: vae.elbo(*(b[None] for b in a))[0]))(*args),
                               vae.elbo(*args), rtol=1e-6)
    traces = []

    @jax.jit
    def loss(logits, mean, logvar, key):
        traces.append(None)
        z = vae.reparameterize(key, mean, logvar)
        return -jnp.mean(vae.elbo(args[0], logits, mean + 0 * z, logvar, beta=0.5))

    loss(*args[1:], jax.random.key(0))
    loss(args[1] + 1, args[2], args[3], jax.random.key(1))
    assert len(traces) == 1
    # Eager calls compile once per shape, not per call or per beta.
    vae.elbo(*args, beta=0.25)
    before = vae._elbo_kernel._cache_size()
    vae.elbo(*args, beta=0.75)
    assert vae._elbo_kernel._cache_size() == before


# ------------------------------------------------------------------------------------------
# The VAE modules.
# ------------------------------------------------------------------------------------------


def test_vae_mlp_defaults_are_pytorchs_example():
    from genjax.nn._vae import VaeMlp

    # Shapes only (jax.eval_shape traces without compiling).
    model = VaeMlp()
    x, key = jax.ShapeDtypeStruct((3, 28, 28, 1), F32), jax.random.key(1)
    params = jax.eval_shape(model.init, key, x, key)["params"]
    shapes = {k: v["kernel"].shape for k, v in params.items()}
    # pytorch/examples vae/main.py: fc1 784->400, fc21/fc22 400->20, fc3 20->400, fc4 400->784.
    assert shapes == {"enc_0": (784, 400), "enc_mean": (400, 20), "enc_logvar": (400, 20), "dec_0": (20, 400),
                      "dec_out": (400, 784)}
    assert sum(math.prod(v.shape) for v in jax.tree.leaves(params)) == 652_824
    logits, mean, logvar = jax.eval_shape(lambda p, x: model.apply({"params": p}, x, key), params, x)
    assert logits.shape == (3, 28, 28, 1) and mean.shape == logvar.shape == (3, 20)
    with pytest.raises(ValueError, match="x must be a batch of images"):
        jax.eval_shape(lambda p: model.apply({"params": p}, jnp.zeros((3, 784)), key), params)


def test_vae_conv_shapes_and_parameter_names():
    from genjax.nn._vae import VaeConv

    model = VaeConv(channels=(4, 8), hidden_dim=16, latent_dim=3)
    key = jax.random.key(0)
    params = jax.eval_shape(model.init, key, jax.ShapeDtypeStruct((1, 28, 28, 1), F32), key)["params"]
    assert all(k.startswith(("enc_", "dec_")) for k in params)
    mean, logvar = jax.eval_shape(lambda p: model.apply({"params": p}, jnp.zeros((2, 28, 28, 1)), method=model.encode),
                                  params)
    assert mean.shape == logvar.shape == (2, 3)
    out = jax.eval_shape(lambda p: model.apply({"params": p}, jnp.zeros((5, 3)), method=model.decode), params)
    assert out.shape == (5, 28, 28, 1)


# The doctests, `__all__` and the light import of this module: tests/test_math_modules.py.
