"""genjax._numerics: the stable softplus / log_sigmoid that the VAE, GAN and autoencoder losses use.

References: float64 NumPy (`np.logaddexp(x, 0)` is log(1 + e^x); its derivative is the logistic
sigmoid 1 / (1 + e^-x)) and `jax.nn.softplus` / `jax.nn.log_sigmoid`, which these replace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genjax import _numerics as nm

X = np.concatenate([np.linspace(-80, 80, 20001), [0.0, 1e-30, -1e-30, 1e4, -1e4, 88.0, -88.0]]).astype(np.float32)


def test_softplus_and_log_sigmoid_match_float64_and_jax_nn():
    x64 = X.astype(np.float64)
    want = np.logaddexp(x64, 0.0)
    got = np.asarray(jax.jit(nm.softplus)(X), np.float64)
    normal = want > np.finfo(np.float32).tiny  # below it float32 results are flushed/subnormal
    np.testing.assert_allclose(got[normal], want[normal], rtol=2e-7)
    np.testing.assert_allclose(got, np.asarray(jax.nn.softplus(X)), rtol=2e-7, atol=1e-38)
    np.testing.assert_allclose(np.asarray(nm.log_sigmoid(X)), np.asarray(jax.nn.log_sigmoid(X)), rtol=2e-7,
                               atol=1e-38)


def test_derivative_is_the_sigmoid_everywhere_and_never_nan():
    x = jnp.asarray(np.concatenate([X, [np.inf, -np.inf]]).astype(np.float32))
    sig = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -700, 700)))
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(nm.softplus)))(x))
    assert not np.isnan(grad).any()
    np.testing.assert_allclose(grad, sig, atol=2e-7)
    assert float(jax.grad(nm.softplus)(0.0)) == 0.5  # sigmoid(0), where max(x, 0) has a kink
    np.testing.assert_allclose(np.asarray(jax.vmap(jax.grad(nm.log_sigmoid))(x)), 1.0 - sig, atol=2e-7)
    for v in (-3.0, 0.0, 0.7, 12.0):
        check_grads(nm.softplus, (jnp.float32(v),), order=2, modes=["fwd", "rev"])
        check_grads(nm.log_sigmoid, (jnp.float32(v),), order=2, modes=["fwd", "rev"])


def test_infinities_and_extremes():
    y = np.asarray(nm.softplus(jnp.array([np.inf, -np.inf, 1e4, -1e4], jnp.float32)))
    assert y[0] == np.inf and y[1] == 0.0 and y[2] == 1e4 and y[3] == 0.0
    assert float(nm.log_sigmoid(jnp.float32(-1e4))) == -1e4
    assert np.isnan(float(nm.softplus(jnp.float32(np.nan))))  # NaN in, NaN out


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_kept_and_as_accurate_as_jax_nn(dtype):
    x = jnp.linspace(-20, 20, 1001).astype(dtype)
    y = nm.softplus(x)
    assert y.dtype == dtype and jax.grad(lambda v: nm.softplus(v).sum())(x).dtype == dtype
    ref = np.logaddexp(np.asarray(x, np.float64), 0.0)
    ours = np.abs(np.asarray(y, np.float64) - ref).max()
    theirs = np.abs(np.asarray(jax.nn.softplus(x), np.float64) - ref).max()
    assert ours <= theirs


def test_second_derivative_is_sigmoid_prime_including_at_zero():
    x = jnp.array([-30.0, -2.0, -1e-3, 0.0, 1e-3, 2.0, 30.0], jnp.float32)
    s = 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
    second = np.asarray(jax.vmap(jax.grad(jax.grad(nm.softplus)))(x))
    np.testing.assert_allclose(second, s * (1 - s), rtol=1e-5, atol=1e-12)
    assert float(jax.grad(jax.grad(nm.softplus))(0.0)) == 0.25


def test_every_ad_mode_matches_jax_nn():
    """jvp, linearize, jacfwd, HVPs (forward over reverse, reverse over forward) of the CPU form
    against jax.nn.softplus / jax.nn.log_sigmoid (the plain path), including at +-1e4 and 0."""
    x = jnp.asarray([-1e4, -30.0, -2.0, 0.0, 0.5, 3.0, 40.0, 1e4], jnp.float32)
    t = jnp.asarray(np.random.default_rng(0).normal(size=x.shape), jnp.float32)
    pairs = [(nm.softplus, jax.nn.softplus), (nm.log_sigmoid, jax.nn.log_sigmoid),
             (lambda v: nm.bernoulli_log_prob(0.3, v), lambda v: 0.3 * v - jax.nn.softplus(v))]
    modes = {
        "jvp": lambda fn: jax.jvp(fn, (x,), (t,)),
        "linearize": lambda fn: jax.linearize(fn, x)[1](t),
        "jacfwd": lambda fn: jax.jacfwd(fn)(x),
        "forward_over_reverse": lambda fn: jax.jvp(jax.grad(lambda v: jnp.sum(fn(v))), (x,), (t,))[1],
        "reverse_over_forward": lambda fn: jax.grad(lambda v: jnp.sum(jax.jvp(fn, (v,), (t,))[1] ** 2))(x),
    }
    for mine, ref in pairs:
        for name, mode in modes.items():
            got, want = jax.jit(lambda: mode(mine))(), jax.jit(lambda: mode(ref))()
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                assert np.all(np.isfinite(a)), name
                np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=name)
