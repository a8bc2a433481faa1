"""Bad inputs for every public name of genjax.vae (issue 15): a clear error or a finite result.

The walk covers `vae.__all__` (asserted). For each function there is one good call, and from it:

- wrong dtypes (complex, strings, None) for every array argument, wrong shapes, bad keys, bad
  callables, bad option strings, and every static number (beta, a fixed decoder_logvar,
  baseline) and count (num_samples, chunk_size, event_ndim, sample_shape) outside its domain:
  a `ValueError`/`TypeError` whose message names the argument (in backticks);
- extreme values (logits of +-1e4, log-variances far from 0, log weights of +-1e4, -inf weights)
  in float32, bfloat16 and float16: a finite value and a finite gradient;
- infinite parameters where the density has a limit: that limit, never NaN. The expected limits
  are the closed forms of the Bernoulli and Gaussian log-densities (a logit of +inf makes x = 1
  certain: log-probability 0; a log-variance of -inf is a point mass: +inf at the mean, -inf
  elsewhere; +inf is a flat density: -inf) and of KL(q || N(0, I)) (+inf for an infinite
  log-variance of q, Kingma & Welling 2014, Appendix B).

The tests named `test_issue15_*` reproduce the defects reported in issue 15; each failed on the
code before the fix (checked by running them against the previous genjax/vae.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import vae
from tests import _walk as walk

B, D, E, K = 2, 3, 4, 5  # batch, latent, event, importance samples
KEY = jax.random.key(0)
X = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.3, 0.7]])  # [B, E]
OUT = jnp.zeros((B, E))
MEAN, LOGVAR, Z = jnp.zeros((B, D)), jnp.zeros((B, D)), jnp.zeros((B, D))
ZK, OUTK = jnp.zeros((K, B, D)), jnp.zeros((K, B, E))


def _encode(x):
    return jnp.zeros((x.shape[0], D)), jnp.zeros((x.shape[0], D))


def _decode(z):
    return jnp.zeros((z.shape[0], E))


# One good call per public function (keyword arguments), and its array arguments.
GOOD = {
    "reparameterize": dict(key=KEY, mean=MEAN, logvar=LOGVAR, sample_shape=(2,)),
    "elbo": dict(x=X, decoder_out=OUT, mean=MEAN, logvar=LOGVAR),
    "log_likelihood": dict(x=X, decoder_out=OUT),
    "diag_gaussian_log_prob": dict(z=Z, mean=MEAN, logvar=LOGVAR),
    "score_function_elbo": dict(x=X, decoder_out=OUT, z=Z, mean=MEAN, logvar=LOGVAR),
    "iwae_log_weights": dict(x=X, decoder_out=OUTK, z=ZK, mean=MEAN, logvar=LOGVAR),
    "iwae_bound": dict(log_weights=jnp.zeros((K, B))),
    "sample_iwae_log_weights": dict(key=KEY, encode_fn=_encode, decode_fn=_decode, x=X, num_samples=4,
                                    chunk_size=2),
    "estimate_log_likelihood": dict(key=KEY, encode_fn=_encode, decode_fn=_decode, x=X, num_samples=4,
                                    chunk_size=2),
}
ARRAYS = {
    "reparameterize": ["mean", "logvar"],
    "elbo": ["x", "decoder_out", "mean", "logvar"],
    "log_likelihood": ["x", "decoder_out"],
    "diag_gaussian_log_prob": ["z", "mean", "logvar"],
    "score_function_elbo": ["x", "decoder_out", "z", "mean", "logvar"],
    "iwae_log_weights": ["x", "decoder_out", "z", "mean", "logvar"],
    "iwae_bound": ["log_weights"],
    "sample_iwae_log_weights": ["x"],
    "estimate_log_likelihood": ["x"],
}
CONSTANTS = {"LIKELIHOODS"}


def test_the_walk_covers_every_public_name():
    assert set(GOOD) | CONSTANTS == set(vae.__all__)
    assert set(ARRAYS) == set(GOOD)
    assert vae.LIKELIHOODS == ("bernoulli", "gaussian")
    for name, kwargs in GOOD.items():  # the good calls are good
        out = getattr(vae, name)(**kwargs)
        assert bool(jnp.all(jnp.isfinite(out))), name


# ------------------------------------------------------------------------------------------
# Clear errors.
# ------------------------------------------------------------------------------------------


def _error_cases():
    cases = []  # (id, function name, overrides, exception, the argument the message names)

    def add(name, arg, overrides, exc, label):
        cases.append(pytest.param(name, overrides, exc, arg, id=f"{name}-{arg}-{label}"))

    # Wrong dtypes, for every array argument of every function.
    for name, arrays in ARRAYS.items():
        for arg in arrays:
            good = GOOD[name][arg]
            add(name, arg, {arg: jnp.asarray(good, jnp.complex64)}, TypeError, "complex")
            add(name, arg, {arg: "abc"}, TypeError, "string")
            add(name, arg, {arg: None}, TypeError, "None")
            add(name, arg, {arg: [["a", "b"]]}, TypeError, "strings")
    # Keys.
    for name in ("reparameterize", "sample_iwae_log_weights", "estimate_log_likelihood"):
        add(name, "key", {"key": None}, TypeError, "None")
        add(name, "key", {"key": jnp.zeros(3)}, TypeError, "floats")
        add(name, "key", {"key": jax.random.split(KEY, 2)}, ValueError, "batch-of-keys")
        add(name, "key", {"key": "0"}, TypeError, "string")
    # Callables.
    for name in ("sample_iwae_log_weights", "estimate_log_likelihood"):
        add(name, "encode_fn", {"encode_fn": X}, TypeError, "array")
        add(name, "decode_fn", {"decode_fn": None}, TypeError, "None")
        add(name, "encode_fn", {"encode_fn": lambda x: jnp.zeros((x.shape[0], D))}, ValueError, "not-a-pair")
        add(name, "encode_fn", {"encode_fn": lambda x: _encode(x[:1])}, ValueError, "wrong-batch")
        add(name, "decode_fn", {"decode_fn": lambda z: jnp.zeros((z.shape[0], E + 1))}, ValueError, "wrong-event")
        add(name, "decode_fn", {"decode_fn": lambda z: jnp.zeros((z.shape[0], E), jnp.complex64)}, TypeError,
            "complex")
        add(name, "decode_fn", {"decode_fn": lambda z: (_decode(z), _decode(z))}, ValueError, "pair-bernoulli")
    # Counts and shapes: Python ints only, never truncated.
    for name in ("sample_iwae_log_weights", "estimate_log_likelihood"):
        for arg in ("num_samples", "chunk_size"):
            add(name, arg, {arg: 2.5}, TypeError, "float")
            add(name, arg, {arg: 2.0}, TypeError, "integral-float")
            add(name, arg, {arg: True}, TypeError, "bool")
            add(name, arg, {arg: "2"}, TypeError, "string")
            add(name, arg, {arg: 0}, ValueError, "zero")
            add(name, arg, {arg: -2}, ValueError, "negative")
        add(name, "num_samples", {"num_samples": 5}, ValueError, "not-a-multiple")
        add(name, "decoder_logvar", {"likelihood": "gaussian", "decoder_logvar": jnp.zeros(E)}, ValueError,
            "not-scalar")
    add("reparameterize", "sample_shape", {"sample_shape": (2.5,)}, TypeError, "float")
    add("reparameterize", "sample_shape", {"sample_shape": (True,)}, TypeError, "bool")
    add("reparameterize", "sample_shape", {"sample_shape": "ab"}, TypeError, "string")
    add("reparameterize", "sample_shape", {"sample_shape": None}, TypeError, "None")
    add("reparameterize", "sample_shape", {"sample_shape": (-1,)}, ValueError, "negative")
    add("log_likelihood", "event_ndim", {"event_ndim": 1.0}, TypeError, "float")
    add("log_likelihood", "event_ndim", {"event_ndim": True}, TypeError, "bool")
    add("log_likelihood", "event_ndim", {"event_ndim": -1}, ValueError, "negative")
    add("log_likelihood", "event_ndim", {"event_ndim": 3}, ValueError, "too-large")
    # Option strings.
    for name in ("elbo", "log_likelihood", "score_function_elbo", "iwae_log_weights", "sample_iwae_log_weights",
                 "estimate_log_likelihood"):
        add(name, "likelihood", {"likelihood": "poisson"}, ValueError, "unknown")
        add(name, "likelihood", {"likelihood": None}, ValueError, "None")
        add(name, "decoder_logvar", {"decoder_logvar": 0.0}, ValueError, "with-bernoulli")
    # Static numbers outside their domain.
    for name in ("elbo", "score_function_elbo"):
        for value, exc in ((-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                           ("0.3", TypeError), (True, TypeError), (None, TypeError),
                           (jnp.ones(2), ValueError)):
            add(name, "beta", {"beta": value}, exc, repr(value))
    for name in ("elbo", "log_likelihood", "score_function_elbo", "iwae_log_weights"):
        for value, exc in ((math.nan, ValueError), (math.inf, ValueError), (-math.inf, ValueError),
                           ("0.3", TypeError), (True, TypeError)):
            add(name, "decoder_logvar", {"likelihood": "gaussian", "decoder_logvar": value}, exc, repr(value))
        add(name, "decoder_logvar", {"likelihood": "gaussian", "decoder_logvar": jnp.zeros(E + 1)}, ValueError,
            "shape")
    for value, exc in ((math.nan, ValueError), (math.inf, ValueError), ("0.3", TypeError), (False, TypeError),
                       (jnp.zeros(3), ValueError)):
        add("score_function_elbo", "baseline", {"baseline": value}, exc, repr(value))
    # Wrong shapes.
    one_example = {"mean": jnp.zeros(B), "logvar": jnp.zeros(B)}  # [B] latents: "one example"
    for name in ("elbo", "score_function_elbo", "iwae_log_weights"):
        extra = {"z": jnp.zeros(B)} if name == "score_function_elbo" else {}
        extra = {"z": jnp.zeros((K, B))} if name == "iwae_log_weights" else extra
        add(name, "mean", {**one_example, **extra}, ValueError, "no-batch-axis")
        add(name, "logvar", {"logvar": jnp.zeros((B, D + 1))}, ValueError, "logvar-shape")
        add(name, "x", {"x": X[:1]}, ValueError, "x-batch")
        add(name, "mean", {"mean": jnp.zeros(()), "logvar": jnp.zeros(())}, ValueError, "scalar")
    add("elbo", "decoder_out", {"decoder_out": OUT[:, :2]}, ValueError, "shape")
    add("elbo", "decoder_out", {"decoder_out": OUT[:, None]}, ValueError, "broadcastable")
    add("score_function_elbo", "decoder_out", {"decoder_out": OUT.T}, ValueError, "transposed")
    add("score_function_elbo", "z", {"z": ZK}, ValueError, "sample-axis")
    add("iwae_log_weights", "z", {"z": ZK[..., :2]}, ValueError, "latent")
    add("iwae_log_weights", "decoder_out", {"decoder_out": OUT}, ValueError, "no-sample-axis")
    add("iwae_log_weights", "decoder_out", {"decoder_out": OUTK[:2]}, ValueError, "sample-count")
    add("log_likelihood", "decoder_out", {"decoder_out": OUT[:1]}, ValueError, "shape")
    add("log_likelihood", "decoder_out", {"decoder_out": OUT[0]}, ValueError, "broadcastable")
    add("diag_gaussian_log_prob", "z", {"z": jnp.zeros(())}, ValueError, "scalar")
    add("diag_gaussian_log_prob", "mean", {"mean": jnp.zeros((B, D + 1))}, ValueError, "shape")
    add("diag_gaussian_log_prob", "logvar", {"logvar": jnp.zeros((3, B, D))}, ValueError, "grows-z")
    add("reparameterize", "mean", {"mean": jnp.zeros(()), "logvar": jnp.zeros(())}, ValueError, "scalar")
    add("reparameterize", "mean", {"logvar": jnp.zeros((B, 1))}, ValueError, "shape")
    add("iwae_bound", "log_weights", {"log_weights": jnp.zeros((0, B))}, ValueError, "no-samples")
    add("iwae_bound", "log_weights", {"log_weights": jnp.zeros(())}, ValueError, "scalar")
    for name in ("sample_iwae_log_weights", "estimate_log_likelihood"):
        add(name, "x", {"x": jnp.zeros(())}, ValueError, "scalar")
    return cases


# NumPy 2 warns (an error under this suite's filterwarnings) while JAX rejects a nested list of
# strings; the TypeError that follows is what a user sees.
@pytest.mark.filterwarnings("ignore:Data type alias:DeprecationWarning")
@pytest.mark.parametrize("name, overrides, exc, arg", _error_cases())
def test_bad_input_is_a_clear_error_naming_the_argument(name, overrides, exc, arg):
    kwargs = {**GOOD[name], **overrides}
    with pytest.raises(exc) as info:
        getattr(vae, name)(**kwargs)
    assert f"`{arg}" in str(info.value), str(info.value)  # `decode_fn(z)`, `activations[1]` count


# ------------------------------------------------------------------------------------------
# Empty batches: an empty result, not an error or NaN.
# ------------------------------------------------------------------------------------------


def test_empty_batches_give_empty_results():
    x0, m0 = jnp.zeros((0, E)), jnp.zeros((0, D))
    assert vae.elbo(x0, x0, m0, m0).shape == (0,)
    assert vae.score_function_elbo(x0, x0, m0, m0, m0).shape == (0,)
    assert vae.iwae_log_weights(x0, jnp.zeros((K, 0, E)), jnp.zeros((K, 0, D)), m0, m0).shape == (K, 0)
    assert vae.log_likelihood(x0, x0).shape == (0,)
    assert vae.diag_gaussian_log_prob(m0).shape == (0,)
    assert vae.reparameterize(KEY, m0, m0, (2,)).shape == (2, 0, D)
    assert vae.iwae_bound(jnp.zeros((K, 0))).shape == (0,)
    assert vae.sample_iwae_log_weights(KEY, _encode, _decode, x0, 4, chunk_size=2).shape == (4, 0)
    assert vae.estimate_log_likelihood(KEY, _encode, _decode, x0, 4).shape == (0,)
    assert vae.reparameterize(KEY, MEAN, LOGVAR, (0,)).shape == (0, B, D)  # no samples asked for


# ------------------------------------------------------------------------------------------
# Extreme values: finite values and finite gradients, in float32, bfloat16 and float16.
# ------------------------------------------------------------------------------------------

_X01 = jnp.array([[1.0, 0.0, 1.0, 0.0]])
_HUGE = jnp.array([[1e4, -1e4, -1e4, 1e4]])  # two certain hits, two certain misses
_CERTAIN = jnp.array([[jnp.inf, -jnp.inf, 1e4, -1e4]])  # x = (1, 0, 1, 0): all certain hits
_M, _LV = jnp.array([[5.0, -5.0]]), jnp.array([[-8.0, 8.0]])  # gradients stay below 65504
_ZE = jnp.array([[5.0, 0.0]])  # z equal to the mean in its first coordinate


def _w_decode(w):
    return lambda z: jnp.tanh(z @ w) * 50.0  # saturating logits


FINITE = {
    "reparameterize": (lambda m, lv: vae.reparameterize(KEY, m, lv, (3,)), (_M, _LV)),
    "elbo": (lambda o, m, lv: vae.elbo(_X01, o, m, lv), (_HUGE, _M, _LV)),
    "elbo-certain-infinite-logits": (lambda o, m, lv: vae.elbo(_X01, o, m, lv), (_CERTAIN, _M, _LV)),
    "elbo-gaussian": (lambda o, m, lv, s: vae.elbo(_X01, o, m, lv, "gaussian", decoder_logvar=s),
                      (_X01 + jnp.array([[0.0, 1e-3, 3.0, 0.0]]), _M, _LV, jnp.array([[-8.0, -8.0, 8.0, 0.0]]))),
    "log_likelihood": (lambda o: vae.log_likelihood(jnp.array([[0.3, 1.0, 0.0, 0.5]]), o), (_HUGE,)),
    "log_likelihood-certain-infinite-logits": (lambda o: vae.log_likelihood(_X01, o), (_CERTAIN,)),
    "diag_gaussian_log_prob": (lambda z, m, lv: vae.diag_gaussian_log_prob(z, m, lv), (_ZE, _M, _LV)),
    "score_function_elbo": (lambda o, m, lv: vae.score_function_elbo(_X01, o, _ZE, m, lv, baseline=-3.0),
                            (_HUGE, _M, _LV)),
    "iwae_log_weights": (lambda o, z, m, lv: vae.iwae_log_weights(_X01, o[None], z[None], m, lv),
                         (_HUGE, _ZE, _M, _LV)),
    "iwae_bound": (vae.iwae_bound, (jnp.array([[1e4, -1e4, -jnp.inf], [-1e4, 1e4, 0.0]]),)),
    "sample_iwae_log_weights": (lambda w, x: vae.sample_iwae_log_weights(KEY, _encode, _w_decode(w), x, 4,
                                                                         chunk_size=2),
                                (jnp.full((D, E), 3.0), X)),
    "estimate_log_likelihood": (lambda w, x: vae.estimate_log_likelihood(KEY, _encode, _w_decode(w), x, 4),
                                (jnp.full((D, E), 3.0), X)),
}


def test_the_extreme_value_walk_covers_every_function():
    assert {name.split("-")[0] for name in FINITE} == set(GOOD)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("case", sorted(FINITE))
def test_extreme_values_give_finite_values_and_gradients(case, dtype):
    fn, args = FINITE[case]
    walk.assert_finite_value_and_grads(fn, args, dtype)


# ------------------------------------------------------------------------------------------
# Infinite parameters: the limits, never NaN (the defects of issue 15).
# ------------------------------------------------------------------------------------------


def test_issue15_bernoulli_logits_of_plus_minus_inf_give_the_limits():
    x = jnp.array([[1.0, 0.0, 0.3]])
    # log p = x log s(l) + (1 - x) log s(-l): at l = +inf, 0 for x = 1 and -inf otherwise.
    np.testing.assert_array_equal(vae.log_likelihood(x, jnp.full((1, 3), jnp.inf), event_ndim=0),
                                  [[0.0, -np.inf, -np.inf]])
    np.testing.assert_array_equal(vae.log_likelihood(x, jnp.full((1, 3), -jnp.inf), event_ndim=0),
                                  [[-np.inf, 0.0, -np.inf]])
    # In the ELBO: certain pixels cost nothing, an impossible one makes the bound -inf.
    m = lv = jnp.zeros((1, 2))
    certain = vae.elbo(jnp.array([[1.0, 0.0]]), jnp.array([[jnp.inf, -jnp.inf]]), m, lv)
    np.testing.assert_array_equal(certain, [0.0])
    impossible = vae.elbo(jnp.array([[0.0, 0.0]]), jnp.array([[jnp.inf, -jnp.inf]]), m, lv)
    np.testing.assert_array_equal(impossible, [-np.inf])
    # Its gradient at the certain pixels: d/dl (x l - softplus(l)) = x - sigmoid(l) = 0.
    grad = jax.grad(lambda o: vae.elbo(jnp.array([[1.0, 0.0]]), o, m, lv)[0])(jnp.array([[jnp.inf, -jnp.inf]]))
    np.testing.assert_array_equal(grad, [[0.0, 0.0]])


def test_issue15_infinite_gaussian_log_variances_give_the_limits():
    x, mu = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])  # residuals 0 and 1
    # s = -inf: a point mass at mu: +inf there, -inf elsewhere; s = +inf: -inf everywhere.
    point = vae.log_likelihood(x, mu, "gaussian", decoder_logvar=jnp.full((1, 2), -jnp.inf), event_ndim=0)
    np.testing.assert_array_equal(point, [[np.inf, -np.inf]])
    flat = vae.log_likelihood(x, mu, "gaussian", decoder_logvar=jnp.full((1, 2), jnp.inf), event_ndim=0)
    np.testing.assert_array_equal(flat, [[-np.inf, -np.inf]])
    np.testing.assert_array_equal(vae.diag_gaussian_log_prob(jnp.zeros((1, 1)), 0.0, -jnp.inf), [np.inf])
    np.testing.assert_array_equal(vae.diag_gaussian_log_prob(jnp.ones((1, 1)), 0.0, -jnp.inf), [-np.inf])
    # A finite but tiny variance at a zero residual: -(log 2 pi + s) / 2 (closed form), which
    # the old form (x - mu)^2 * exp(-s) turned into 0 * inf = NaN once exp(-s) overflowed.
    tiny = vae.log_likelihood(jnp.ones((1, 1)), jnp.ones((1, 1)), "gaussian", decoder_logvar=jnp.full((1, 1), -200.0))
    np.testing.assert_allclose(tiny, [-0.5 * (math.log(2 * math.pi) - 200.0)], rtol=1e-6)


def test_issue15_infinite_posterior_log_variances_give_the_limits():
    x, out = jnp.array([[1.0, 0.0]]), jnp.zeros((1, 2))
    m = jnp.zeros((1, 2))
    # KL(N(0, e^s) || N(0, 1)) = (e^s - 1 - s) / 2 per axis: +inf at s = +-inf, so ELBO = -inf.
    for s in (jnp.inf, -jnp.inf):
        lv = jnp.array([[s, 0.0]])
        np.testing.assert_array_equal(vae.elbo(x, out, m, lv), [-np.inf])
        np.testing.assert_array_equal(vae.score_function_elbo(x, out, m, m, lv), [-np.inf])
    # beta = 0 drops the KL term exactly: the reconstruction term, 2 log(1/2), not 0 * inf = NaN.
    lv = jnp.array([[-jnp.inf, 0.0]])
    np.testing.assert_allclose(vae.elbo(x, out, m, lv, beta=0.0), [2 * math.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda b: vae.elbo(x, out, m, lv, beta=b))(0.0), [2 * math.log(0.5)],
                               rtol=1e-6)


def test_issue15_score_function_elbo_equals_the_elbo_where_it_is_infinite():
    # x = 0 where the logit is +inf: an impossible observation; the surrogate must be -inf (the
    # ELBO's value), not (-inf) * 0 = NaN from its zero-valued REINFORCE term.
    x, out, m = jnp.array([[0.0, 1.0]]), jnp.array([[jnp.inf, 0.0]]), jnp.zeros((1, 2))
    np.testing.assert_array_equal(vae.score_function_elbo(x, out, m, m, m), vae.elbo(x, out, m, m))
    assert float(vae.elbo(x, out, m, m)[0]) == -np.inf


def test_iwae_bound_limits():
    np.testing.assert_array_equal(vae.iwae_bound(jnp.array([[-jnp.inf], [-jnp.inf]])), [-np.inf])
    np.testing.assert_array_equal(vae.iwae_bound(jnp.array([[jnp.inf], [0.0]])), [np.inf])
    grad = jax.grad(lambda lw: vae.iwae_bound(lw)[0])(jnp.array([[-jnp.inf], [0.0]]))
    np.testing.assert_array_equal(grad, [[0.0], [1.0]])  # the normalised weights


# ------------------------------------------------------------------------------------------
# The other defects of issue 15.
# ------------------------------------------------------------------------------------------


def test_issue15_elbo_of_a_batch_with_unbatched_latents_is_an_error():
    # [B, D] data with [B] latents used to be read as ONE example with a B-dimensional latent
    # and a [B, D] event, and returned a scalar.
    with pytest.raises(ValueError, match=r"`mean` and `logvar` must be \[\*batch, D\] with at least one batch"):
        vae.elbo(jnp.ones((4, 3)), jnp.zeros((4, 3)), jnp.zeros(4), jnp.zeros(4))
    with pytest.raises(ValueError, match="at least one batch axis"):
        vae.iwae_log_weights(jnp.ones((4, 3)), jnp.zeros((2, 4, 3)), jnp.zeros((2, 4)), jnp.zeros(4), jnp.zeros(4))


def test_issue15_sample_shape_is_never_truncated():
    with pytest.raises(TypeError, match=r"`sample_shape` must be a tuple of ints, got \(2.5,\)"):
        vae.reparameterize(KEY, MEAN, LOGVAR, (2.5,))
    assert vae.reparameterize(KEY, MEAN, LOGVAR, 3).shape == (3, B, D)  # an int is one axis
    assert vae.reparameterize(KEY, MEAN, LOGVAR, (np.int64(2),)).shape == (2, B, D)


def test_issue15_a_missing_key_says_so():
    for call in (lambda: vae.reparameterize(None, MEAN, LOGVAR),
                 lambda: vae.sample_iwae_log_weights(None, _encode, _decode, X, 2),
                 lambda: vae.estimate_log_likelihood(None, _encode, _decode, X, 2)):
        with pytest.raises(TypeError, match="`key` must be a PRNG key.*got None"):
            call()


def test_issue15_key_first_then_callables_then_data():
    lw = vae.sample_iwae_log_weights(KEY, _encode, _decode, X, 4, chunk_size=2)
    assert lw.shape == (4, B)
    est = vae.estimate_log_likelihood(key=KEY, encode_fn=_encode, decode_fn=_decode, x=X, num_samples=4)
    np.testing.assert_allclose(est, [-4 * math.log(2.0)] * B, rtol=1e-6)  # logits 0, x binary: 2^-4
    with pytest.raises(TypeError, match="`encode_fn` must be a function"):
        vae.sample_iwae_log_weights(KEY, X, _encode, _decode, 4)  # the old order (key, x, encode_fn, ...)


def test_issue15_static_numbers_out_of_their_domain_are_errors():
    with pytest.raises(ValueError, match=r"`beta` must be a finite number in \[0, inf\), got -1"):
        vae.elbo(X, OUT, MEAN, LOGVAR, beta=-1.0)
    with pytest.raises(TypeError, match="`beta` must be a real number, got '0.3'"):
        vae.elbo(X, OUT, MEAN, LOGVAR, beta="0.3")
    with pytest.raises(ValueError, match="`decoder_logvar` must be a finite number"):
        vae.elbo(X, OUT, MEAN, LOGVAR, "gaussian", decoder_logvar=math.nan)
    with pytest.raises(TypeError, match="`num_samples` must be a Python int, got 2.5"):
        vae.estimate_log_likelihood(KEY, _encode, _decode, X, 2.5)
    # A traced beta cannot be checked and is used as given (an annealing schedule).
    assert jax.jit(lambda b: vae.elbo(X, OUT, MEAN, LOGVAR, beta=b))(0.5).shape == (B,)
