"""Bad inputs for every public name of genjax.autoencoders (issue 15): a clear error or a finite result.

The walk covers `autoencoders.__all__` (asserted). For each function there is one good call, and
from it:

- wrong dtypes (complex, strings, None) for every array argument, wrong shapes, empty batches
  where a mean over the batch is taken, bad keys and callables, bad option strings, bad axes, and
  every static number and count outside its domain (level per corruption, value_range, rho, k,
  max_k): a `ValueError`/`TypeError` whose message names the argument (in backticks);
- extreme values (logits of +-1e4, saturated sigmoids, infinite logits where the outcome is
  certain) in float32, bfloat16 and float16: a finite value and a finite gradient;
- infinite logits where the loss has a limit: that limit (the closed form of the Bernoulli
  cross-entropy, softplus(l) - x l: 0 for the certain outcome, +inf for any other), never NaN.

The tests named `test_issue15_*` reproduce the defects reported in issue 15; each failed on the
code before the fix (checked by running them against the previous genjax/autoencoders.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import autoencoders as ae
from tests import _walk as walk

B, D, H = 3, 4, 5  # batch, input features, hidden units
KEY = jax.random.key(0)
X = jnp.asarray(np.random.default_rng(0).uniform(0.1, 0.9, (B, D)), jnp.float32)
LOGITS = jnp.asarray(np.random.default_rng(1).normal(size=(B, H)), jnp.float32)
HIDDEN = jax.nn.sigmoid(LOGITS)
W = jnp.asarray(np.random.default_rng(2).normal(size=(D, H)), jnp.float32) * 0.5


def _encoder(v):
    return jnp.tanh(v @ W)


GOOD = {
    "reconstruction_loss": dict(x=X, output=X, likelihood="mse"),
    "corrupt": dict(key=KEY, x=X, kind="masking", level=0.5),
    "sparsity_penalty": dict(activations=HIDDEN, rho=0.1),
    "sparsity_penalty_from_logits": dict(logits=LOGITS, rho=0.1),
    "k_sparse": dict(z=LOGITS, k=2),
    "jacobian_norm_sq": dict(encoder_fn=_encoder, x=X),
    "contractive_penalty": dict(encoder_fn=_encoder, x=X),
    "dense_jacobian_norm_sq": dict(slopes=HIDDEN, kernel=W),
    "sigmoid_contractive_penalty": dict(hidden=HIDDEN, kernel=W),
}
ARRAYS = {
    "reconstruction_loss": ["x", "output"],
    "corrupt": ["x"],
    "sparsity_penalty": ["activations", "rho"],
    "sparsity_penalty_from_logits": ["logits", "rho"],
    "k_sparse": ["z"],
    "jacobian_norm_sq": ["x"],
    "contractive_penalty": ["x"],
    "dense_jacobian_norm_sq": ["slopes", "kernel"],
    "sigmoid_contractive_penalty": ["hidden", "kernel"],
}
CONSTANTS = {"CORRUPTIONS"}


def test_the_walk_covers_every_public_name():
    assert set(GOOD) | CONSTANTS == set(ae.__all__)
    assert set(ARRAYS) == set(GOOD)
    assert ae.CORRUPTIONS == ("masking", "gaussian", "salt_and_pepper")
    for name, kwargs in GOOD.items():  # the good calls are good
        out = getattr(ae, name)(**kwargs)
        assert bool(jnp.all(jnp.isfinite(out))), name


# ------------------------------------------------------------------------------------------
# Clear errors.
# ------------------------------------------------------------------------------------------


def _error_cases():
    cases = []

    def add(name, arg, overrides, exc, label):
        cases.append(pytest.param(name, overrides, exc, arg, id=f"{name}-{arg}-{label}"))

    for name, arrays in ARRAYS.items():
        for arg in arrays:
            good = GOOD[name][arg]
            add(name, arg, {arg: jnp.asarray(good, jnp.complex64)}, TypeError, "complex")
            add(name, arg, {arg: "abc"}, TypeError, "string")
            add(name, arg, {arg: None}, TypeError, "None")
            add(name, arg, {arg: [["a", "b"]]}, TypeError, "strings")
    # Keys and callables.
    add("corrupt", "key", {"key": None}, TypeError, "None")
    add("corrupt", "key", {"key": jnp.zeros(3)}, TypeError, "floats")
    add("corrupt", "key", {"key": jax.random.split(KEY, 2)}, ValueError, "batch-of-keys")
    add("corrupt", "key", {"key": "0"}, TypeError, "string")
    for name in ("jacobian_norm_sq", "contractive_penalty"):
        add(name, "encoder_fn", {"encoder_fn": "encoder"}, TypeError, "string")
        add(name, "encoder_fn", {"encoder_fn": None}, TypeError, "None")
        add(name, "encoder_fn", {"encoder_fn": W}, TypeError, "array")
        add(name, "encoder_fn", {"encoder_fn": lambda v: "code"}, TypeError, "returns-a-string")
        add(name, "encoder_fn", {"encoder_fn": lambda v: {}}, ValueError, "returns-nothing")
    # Option strings and axes.
    add("reconstruction_loss", "likelihood", {"likelihood": "l1"}, ValueError, "unknown")
    add("reconstruction_loss", "likelihood", {"likelihood": None}, ValueError, "None")
    add("reconstruction_loss", "likelihood", {"likelihood": "gaussian"}, ValueError, "vae-name")
    add("reconstruction_loss", "reduction", {"reduction": "none"}, ValueError, "unknown")
    add("reconstruction_loss", "reduction", {"x": jnp.zeros((B, 0)), "output": jnp.zeros((B, 0)),
                                             "reduction": "mean"}, ValueError, "mean-of-nothing")
    add("corrupt", "kind", {"kind": "dropout"}, ValueError, "unknown")
    add("corrupt", "kind", {"kind": None}, ValueError, "None")
    for name in ("reconstruction_loss", "corrupt"):
        add(name, "axis", {"axis": 2.5}, TypeError, "float")
        add(name, "axis", {"axis": True}, TypeError, "bool")
        add(name, "axis", {"axis": "1"}, TypeError, "string")
        add(name, "axis", {"axis": 2}, ValueError, "out-of-range")
        add(name, "axis", {"axis": (1, -1)}, ValueError, "repeated")
    # Static numbers outside their domain.
    for kind in ("masking", "salt_and_pepper"):
        for value, exc in ((-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                           (jnp.float32(1.5), ValueError), ("0.3", TypeError), (True, TypeError),
                           (None, TypeError), (jnp.full(2, 0.3), ValueError), (0.3j, TypeError)):
            add("corrupt", "level", {"kind": kind, "level": value}, exc, f"{kind}-{value!r}")
    for value, exc in ((-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                       (jnp.float32(-1.0), ValueError), ("0.3", TypeError), (False, TypeError)):
        add("corrupt", "level", {"kind": "gaussian", "level": value}, exc, f"gaussian-{value!r}")
    for value, exc in (((0.0,), ValueError), ((0.0, 1.0, 2.0), ValueError), ((1.0, 0.0), ValueError),
                       ((0.5, 0.5), ValueError), ((0.0, math.nan), ValueError), ((-math.inf, 1.0), ValueError),
                       (("0", 1.0), TypeError), ((False, 1.0), TypeError), (1.0, TypeError), (None, TypeError),
                       ("01", TypeError)):
        add("corrupt", "value_range", {"kind": "salt_and_pepper", "value_range": value}, exc, repr(value))
    for name in ("sparsity_penalty", "sparsity_penalty_from_logits"):
        for value, exc in ((0.0, ValueError), (1.0, ValueError), (1.5, ValueError), (-0.1, ValueError),
                           (math.nan, ValueError), (math.inf, ValueError), ("0.3", TypeError), (True, TypeError),
                           (jnp.full(H + 1, 0.1), ValueError)):
            add(name, "rho", {"rho": value}, exc, repr(value))
    for value, exc in ((2.0, TypeError), (True, TypeError), ("2", TypeError), (None, TypeError),
                       (jnp.float32(2.0), TypeError), (-1, ValueError), (H + 1, ValueError),
                       (jnp.array([1, 2]), ValueError)):
        add("k_sparse", "k", {"k": value}, exc, repr(value))
    for value, exc in ((2.0, TypeError), (True, TypeError), (jnp.int32(2), TypeError), (-1, ValueError),
                       (H + 1, ValueError)):
        add("k_sparse", "max_k", {"k": jnp.int32(2), "max_k": value}, exc, repr(value))
    # Wrong shapes and empty batches.
    add("reconstruction_loss", "x", {"output": X[:, :2]}, ValueError, "shape")
    add("reconstruction_loss", "x", {"output": X[0]}, ValueError, "broadcastable")
    add("corrupt", "axis", {"x": jnp.float32(0.5)}, ValueError, "scalar")
    for name, arg in (("sparsity_penalty", "activations"), ("sparsity_penalty_from_logits", "logits")):
        add(name, arg, {arg: HIDDEN[0]}, ValueError, "no-batch-axis")
        add(name, arg, {arg: jnp.zeros((0, H))}, ValueError, "empty-batch")
        add(name, arg, {arg: []}, ValueError, "no-layers")
        add(name, f"{arg}[1]", {arg: [HIDDEN, HIDDEN[0]]}, ValueError, "bad-layer")
        add(name, f"{arg}[1]", {arg: [HIDDEN, None]}, TypeError, "None-layer")
        add(name, "rho", {arg: [HIDDEN, HIDDEN[:, :2]], "rho": jnp.full(H, 0.1)}, ValueError, "rho-per-layer")
    add("k_sparse", "z", {"z": jnp.float32(1.0)}, ValueError, "scalar")
    for name in ("jacobian_norm_sq", "contractive_penalty"):
        add(name, "x", {"x": jnp.float32(1.0)}, ValueError, "scalar")
    add("contractive_penalty", "x", {"x": jnp.zeros((0, D))}, ValueError, "empty-batch")
    add("dense_jacobian_norm_sq", "kernel", {"kernel": W[0]}, ValueError, "not-2d")
    add("dense_jacobian_norm_sq", "slopes", {"slopes": HIDDEN[:, :2]}, ValueError, "units")
    add("dense_jacobian_norm_sq", "slopes", {"slopes": jnp.float32(0.5)}, ValueError, "scalar")
    add("sigmoid_contractive_penalty", "hidden", {"hidden": HIDDEN[None]}, ValueError, "3d")
    add("sigmoid_contractive_penalty", "hidden", {"hidden": jnp.zeros((0, H))}, ValueError, "empty-batch")
    add("sigmoid_contractive_penalty", "hidden", {"kernel": W.T}, ValueError, "transposed")
    add("sigmoid_contractive_penalty", "kernel", {"kernel": W[0]}, ValueError, "not-2d")
    return cases


# NumPy 2 warns (an error under this suite's filterwarnings) while JAX rejects a nested list of
# strings; the TypeError that follows is what a user sees.
@pytest.mark.filterwarnings("ignore:Data type alias:DeprecationWarning")
@pytest.mark.parametrize("name, overrides, exc, arg", _error_cases())
def test_bad_input_is_a_clear_error_naming_the_argument(name, overrides, exc, arg):
    kwargs = {**GOOD[name], **overrides}
    with pytest.raises(exc) as info:
        getattr(ae, name)(**kwargs)
    assert f"`{arg}" in str(info.value), str(info.value)


def test_empty_batches_give_empty_results():
    x0 = jnp.zeros((0, D))
    assert ae.reconstruction_loss(x0, x0, "bernoulli").shape == (0,)
    assert ae.reconstruction_loss(x0, x0, "mse", reduction="mean").shape == (0,)  # no example: no mean
    for kind in ae.CORRUPTIONS:
        assert ae.corrupt(KEY, x0, kind, 0.5).shape == (0, D)
    assert ae.k_sparse(jnp.zeros((0, H)), 2).shape == (0, H)
    assert ae.k_sparse(jnp.zeros((0, H)), jnp.int32(2)).shape == (0, H)
    assert ae.jacobian_norm_sq(_encoder, x0).shape == (0,)
    assert ae.dense_jacobian_norm_sq(jnp.zeros((0, H)), W).shape == (0,)


# ------------------------------------------------------------------------------------------
# Extreme values: finite values and finite gradients, in float32, bfloat16 and float16.
# ------------------------------------------------------------------------------------------

_XB = jnp.array([[1.0, 0.0, 0.3, 1.0]])
_HUGE = jnp.array([[1e4, -1e4, 1e4, -1e4]])
_CERTAIN = jnp.array([[jnp.inf, -jnp.inf, 3.0, 1e4]])  # x = (1, 0, .3, 1): the infinite ones certain
_SATURATED = jnp.array([[1e4, -1e4, 2.0], [-1e4, 1e4, -2.0], [1e4, 1e4, 0.0]])  # no unit all saturated
_MIXED = jnp.array([[jnp.inf, -1e4, 1e4], [0.0, -jnp.inf, -1e4]])  # infinite logits, finite means


def _sigmoid_encoder(w):
    return lambda v: jax.nn.sigmoid(v @ w)


FINITE = {
    "reconstruction_loss": (lambda o: ae.reconstruction_loss(_XB, o, "bernoulli"), (_HUGE,)),
    "reconstruction_loss-certain-infinite-logits": (lambda o: ae.reconstruction_loss(_XB, o, "bernoulli"),
                                                    (_CERTAIN,)),
    "reconstruction_loss-mse": (lambda x, o: ae.reconstruction_loss(x, o, "mse", axis=None), (_XB * 10, -_XB * 10)),
    "corrupt": (lambda x: ae.corrupt(KEY, x, "salt_and_pepper", 0.5), (_HUGE,)),
    "corrupt-gaussian-traced-level": (lambda x, s: ae.corrupt(KEY, x, "gaussian", s), (_HUGE, jnp.float32(3.0))),
    "sparsity_penalty": (lambda l: ae.sparsity_penalty(jax.nn.sigmoid(l), 0.05), (_SATURATED,)),
    "sparsity_penalty_from_logits": (lambda l: ae.sparsity_penalty_from_logits(l, 0.05), (_HUGE * _XB.T,)),
    "sparsity_penalty_from_logits-infinite": (lambda l: ae.sparsity_penalty_from_logits(l, 0.05), (_MIXED,)),
    "k_sparse": (lambda z: ae.k_sparse(z, 2) * jnp.arange(4.0), (_HUGE,)),
    "k_sparse-traced": (lambda z: ae.k_sparse(z, jnp.int32(2), max_k=3) * jnp.arange(4.0), (_HUGE,)),
    "jacobian_norm_sq": (lambda w, x: ae.jacobian_norm_sq(_sigmoid_encoder(w), x), (W * 1e3, X)),
    "contractive_penalty": (lambda w, x: ae.contractive_penalty(_sigmoid_encoder(w), x), (W * 1e3, X)),
    "dense_jacobian_norm_sq": (ae.dense_jacobian_norm_sq, (HIDDEN, W)),
    "sigmoid_contractive_penalty": (lambda l, w: ae.sigmoid_contractive_penalty(jax.nn.sigmoid(l), w),
                                    (_SATURATED, W[:3, :3])),
}


def test_the_extreme_value_walk_covers_every_function():
    assert {name.split("-")[0] for name in FINITE} == set(GOOD)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("case", sorted(FINITE))
def test_extreme_values_give_finite_values_and_gradients(case, dtype):
    fn, args = FINITE[case]
    walk.assert_finite_value_and_grads(fn, args, dtype)


def test_saturated_probabilities_are_infinite_penalties_not_nan():
    # A unit whose batch mean is exactly 0 or 1 (every sigmoid saturated) has KL(rho || 0) = +inf;
    # the log-space version of the same penalty is finite there (closed form: 0.95e4 + 0.05 log
    # 0.05 + 0.95 log 0.95 for one unit at +1e4, rho = 0.05).
    saturated = jnp.full((2, 1), 1e4)
    assert float(ae.sparsity_penalty(jax.nn.sigmoid(saturated), 0.05)) == np.inf
    np.testing.assert_allclose(ae.sparsity_penalty_from_logits(saturated, 0.05),
                               0.95e4 + 0.05 * math.log(0.05) + 0.95 * math.log(0.95), rtol=1e-6)
    assert float(ae.sparsity_penalty_from_logits(jnp.full((2, 1), jnp.inf), 0.05)) == np.inf


# ------------------------------------------------------------------------------------------
# The defects of issue 15.
# ------------------------------------------------------------------------------------------


def test_issue15_bernoulli_reconstruction_at_infinite_logits_is_the_limit():
    x = jnp.array([[1.0, 0.0, 0.0, 1.0, 0.3, 0.3]])
    logits = jnp.array([[jnp.inf, -jnp.inf, jnp.inf, -jnp.inf, jnp.inf, -jnp.inf]])
    # softplus(l) - x l per entry: 0 for the certain outcomes, +inf for the impossible ones.
    per_entry = ae.reconstruction_loss(x, logits, "bernoulli", axis=None, reduction="sum")
    assert float(per_entry) == np.inf
    certain = ae.reconstruction_loss(x[:, :2], logits[:, :2], "bernoulli")
    np.testing.assert_array_equal(certain, [0.0])
    grad = jax.grad(lambda l: ae.reconstruction_loss(x[:, :2], l, "bernoulli")[0])(logits[:, :2])
    np.testing.assert_array_equal(grad, [[0.0, 0.0]])  # sigmoid(l) - x = 0 there


def test_issue15_sparsity_targets_outside_0_1_are_errors():
    for fn, arg in ((ae.sparsity_penalty, HIDDEN), (ae.sparsity_penalty_from_logits, LOGITS)):
        for rho in (1.5, -0.1, 0.0, 1.0, math.nan):
            with pytest.raises(ValueError, match=r"`rho` must be a finite number in \(0, 1\)"):
                fn(arg, rho)
        with pytest.raises(TypeError, match="`rho` must be a real number"):
            fn(arg, "0.05")


def test_issue15_corrupt_level_must_be_a_number_in_its_kinds_domain():
    with pytest.raises(TypeError, match="`level` must be a real number, got '0.3'"):
        ae.corrupt(KEY, X, "masking", "0.3")
    with pytest.raises(TypeError, match="`level` must be a real number, got True"):
        ae.corrupt(KEY, X, "gaussian", True)
    with pytest.raises(ValueError, match=r"`level` must be a finite number in \[0, 1\], got nan"):
        ae.corrupt(KEY, X, "salt_and_pepper", math.nan)
    with pytest.raises(ValueError, match=r"`level`.*\[0, inf\).*Gaussian noise std"):
        ae.corrupt(KEY, X, "gaussian", jnp.float32(-0.5))  # a concrete array is checked too
    with pytest.raises(ValueError, match="`value_range`"):
        ae.corrupt(KEY, X, "salt_and_pepper", 0.5, value_range=(0.0, math.nan))


def test_issue15_corrupt_requires_a_key():
    with pytest.raises(TypeError, match="`key` must be a PRNG key.*got None"):
        ae.corrupt(None, X, "masking", 0.5)


def test_issue15_reconstruction_loss_names_its_distribution_likelihood():
    np.testing.assert_array_equal(ae.reconstruction_loss(X, X, likelihood="mse"), np.zeros(B))
    with pytest.raises(TypeError, match="kind"):
        ae.reconstruction_loss(X, X, kind="mse")


def test_issue15_a_mean_over_no_entries_is_an_error():
    with pytest.raises(ValueError, match="a mean over no entries is undefined"):
        ae.reconstruction_loss(jnp.zeros((2, 0)), jnp.zeros((2, 0)), "mse", reduction="mean")
    # a sum over no entries is 0, as usual
    np.testing.assert_array_equal(ae.reconstruction_loss(jnp.zeros((2, 0)), jnp.zeros((2, 0)), "mse"), [0.0, 0.0])
