"""Bad and extreme inputs for every public function of genjax.divergences (issue 15).

Each function is walked with wrong dtypes (complex, strings, None, objects), wrong shapes,
empty batches and events, out-of-domain static arguments (NaN, negative, out of range, strings
such as "2", booleans) and extreme values (logits +-1e4 and +-inf, zero probabilities, float16
and bfloat16 inputs). Every case asserts one of two outcomes: a clear error (ValueError or
TypeError whose message names the argument), or a finite result with a finite gradient. Where
the true value is infinite (KL with q = 0 < p) the test says so and asserts the gradient is not
NaN. The reference behaviour is the module's documented policy (genjax._checks and the notes at
the top of genjax.divergences), not another library.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import divergences as dv

P = jnp.array([0.2, 0.3, 0.5])
Q = jnp.array([0.5, 0.25, 0.25])
L = jnp.array([0.3, -1.0, 2.0])
JOINT = jnp.array([[0.1, 0.2], [0.3, 0.4]])
HALF = (jnp.float32, jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class Spec:
    fn: Callable[..., Any]
    arrays: dict[str, Any]  # the array arguments (keyword name -> a good value)
    statics: dict[str, Any] = dataclasses.field(default_factory=dict)  # good static values
    logits: bool = False  # the arrays are logits (any real, -inf allowed) rather than probabilities

    def call(self, **overrides):
        return self.fn(**{**self.arrays, **self.statics, **overrides})


SPECS = {
    "entropy": Spec(dv.entropy, {"p": P}, {"axis": -1, "base": None}),
    "cross_entropy": Spec(dv.cross_entropy, {"p": P, "q": Q}, {"axis": -1, "base": None}),
    "kl_divergence": Spec(dv.kl_divergence, {"p": P, "q": Q}, {"axis": -1, "base": None}),
    "js_divergence": Spec(dv.js_divergence, {"p": P, "q": Q}, {"axis": -1, "base": None}),
    "mutual_information": Spec(dv.mutual_information, {"joint": JOINT}, {"base": None}),
    "entropy_from_logits": Spec(dv.entropy_from_logits, {"logits": L}, {"axis": -1, "base": None}, True),
    "cross_entropy_from_logits": Spec(dv.cross_entropy_from_logits, {"logits_p": L, "logits_q": -L},
                                      {"axis": -1, "base": None}, True),
    "kl_divergence_from_logits": Spec(dv.kl_divergence_from_logits, {"logits_p": L, "logits_q": -L},
                                      {"axis": -1, "base": None}, True),
    "js_divergence_from_logits": Spec(dv.js_divergence_from_logits, {"logits_p": L, "logits_q": -L},
                                      {"axis": -1, "base": None}, True),
    "bernoulli_kl": Spec(dv.bernoulli_kl, {"rho": P, "rho_hat": Q}),
    "gaussian_kl": Spec(dv.gaussian_kl, {"mean_q": L, "logvar_q": -L, "mean_p": Q, "logvar_p": P}, {"axis": -1},
                        True),
    "wasserstein_1d": Spec(dv.wasserstein_1d, {"x": L, "y": -L}, {"axis": -1}, True),
}


def test_the_walk_covers_every_public_function():
    missing, extra = set(dv.__all__) - set(SPECS), set(SPECS) - set(dv.__all__)
    assert not missing and not extra, f"not walked: {sorted(missing)}; not public: {sorted(extra)}"


def _total(spec: Spec, arrays: dict[str, Any]):
    """value, gradients (w.r.t. every array argument) of the summed result, in float32."""
    names = list(arrays)

    def f(*xs):
        return jnp.sum(spec.call(**dict(zip(names, xs))).astype(jnp.float32))

    value, grads = jax.value_and_grad(f, argnums=tuple(range(len(names))))(*arrays.values())
    return float(value), [np.asarray(g, np.float32) for g in grads]


def _assert_finite_or_named_error(spec: Spec, arrays: dict[str, Any], names: tuple[str, ...]):
    """Either a ValueError/TypeError naming one of `names`, or a finite value and gradient."""
    try:
        value, grads = _total(spec, arrays)
    except (ValueError, TypeError) as err:
        assert any(f"`{n}`" in str(err) for n in names), str(err)
        return
    assert math.isfinite(value), value
    assert all(np.all(np.isfinite(g)) for g in grads), grads


# ------------------------------------------------------------------------------ dtypes


BAD_VALUES = {
    "complex": jnp.array([0.5 + 0.5j, 0.5, 0.0]),
    "string": "0.5",
    "None": None,
    "objects": np.array([object(), object(), object()]),
}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("name", sorted(SPECS))
def test_non_real_arrays_are_a_type_error_naming_the_argument(name, bad):
    spec = SPECS[name]
    for arg in spec.arrays:
        with pytest.raises(TypeError, match=f"`{arg}`"):
            spec.call(**{arg: BAD_VALUES[bad]})


@pytest.mark.parametrize("name", sorted(SPECS))
def test_integer_and_boolean_arrays_are_promoted(name):
    """genjax._checks: integer and boolean inputs become the default float dtype."""
    spec = SPECS[name]
    ints = {k: (jnp.asarray(v) > 0.25).astype(jnp.int32) for k, v in spec.arrays.items()}
    out = spec.call(**ints)
    assert out.dtype == jnp.float32
    bools = {k: jnp.asarray(v) > 0.25 for k, v in spec.arrays.items()}
    assert spec.call(**bools).dtype == jnp.float32


# ------------------------------------------------------------------------------ shapes


WRONG_SHAPES = {
    "entropy": [({"axis": 1}, "axis")],
    "cross_entropy": [({"q": jnp.ones(4) / 4}, "q"), ({"q": jnp.ones((2, 3)) / 3}, "q")],
    "kl_divergence": [({"q": jnp.ones(4) / 4}, "q"), ({"p": jnp.ones((2, 3)) / 3}, "p")],
    "js_divergence": [({"q": jnp.ones(4) / 4}, "q"), ({"q": jnp.ones(()) / 3}, "q")],
    "mutual_information": [({"joint": jnp.ones(4) / 4}, "joint"), ({"joint": jnp.ones(()) / 4}, "joint")],
    "entropy_from_logits": [({"logits": jnp.zeros(()), "axis": -1}, "axis")],
    "cross_entropy_from_logits": [({"logits_q": jnp.zeros(4)}, "logits_q")],
    "kl_divergence_from_logits": [({"logits_q": jnp.zeros((2, 3))}, "logits_q")],
    "js_divergence_from_logits": [({"logits_p": jnp.zeros(2)}, "logits_p")],
    "bernoulli_kl": [({"rho": jnp.full((2, 3), 0.1)}, "rho"), ({"rho": jnp.full(4, 0.1)}, "rho")],
    "gaussian_kl": [({"logvar_q": jnp.zeros(4)}, "logvar_q"), ({"mean_p": jnp.zeros((2, 3))}, "mean_p"),
                    ({"logvar_p": jnp.zeros(2)}, "logvar_p")],
    "wasserstein_1d": [({"y": jnp.zeros(4)}, "y"), ({"x": jnp.zeros(()), "y": jnp.zeros(())}, "x")],
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_wrong_shapes_are_a_value_error_naming_the_argument(name):
    spec = SPECS[name]
    assert WRONG_SHAPES[name], name
    for overrides, arg in WRONG_SHAPES[name]:
        with pytest.raises(ValueError, match=f"`{arg}`"):
            spec.call(**overrides)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_empty_batches_and_events(name):
    """An empty batch gives an empty result; an empty event axis either a named ValueError
    (wasserstein_1d: no samples) or the empty sum 0, finite, with a finite gradient."""
    spec = SPECS[name]
    if name == "mutual_information":
        batch = {"joint": jnp.ones((0, 2, 2))}
        event = {"joint": jnp.ones((2, 0))}
    elif name == "bernoulli_kl":
        batch = {"rho": 0.1, "rho_hat": jnp.ones((0,))}
        event = batch
    else:
        batch = {k: jnp.ones((0, 3)) / 3 for k in spec.arrays}
        event = {k: jnp.ones((2, 0)) for k in spec.arrays}
    out = spec.call(**batch)
    assert out.shape[0] == 0, out.shape
    _assert_finite_or_named_error(spec, event, tuple(spec.arrays))
    if name == "wasserstein_1d":
        with pytest.raises(ValueError, match="no samples"):
            spec.call(**event)


# ------------------------------------------------------------------------------ static arguments


BAD_BASES = [(math.nan, ValueError), (-2.0, ValueError), (0.0, ValueError), (1.0, ValueError),
             (math.inf, ValueError), ("2", TypeError), (True, TypeError), (jnp.float32(2.0), TypeError)]
BAD_AXES = [(1.5, TypeError), ("x", TypeError), (True, TypeError), (5, ValueError), (-3, ValueError)]
BAD_PROBABILITY = [(math.nan, ValueError), (-0.1, ValueError), (1.5, ValueError), (math.inf, ValueError),
                   ("0.3", TypeError), (True, TypeError)]


def _static_cases():
    for name, spec in sorted(SPECS.items()):
        if "base" in spec.statics:
            for bad, err in BAD_BASES:
                yield name, "base", bad, err
        if "axis" in spec.statics:
            for bad, err in BAD_AXES:
                yield name, "axis", bad, err
    for arg in ("rho", "rho_hat"):
        for bad, err in BAD_PROBABILITY:
            yield "bernoulli_kl", arg, bad, err
    yield "wasserstein_1d", "axis", (0,), TypeError  # one sample axis: an int


@pytest.mark.parametrize("name, arg, bad, error", list(_static_cases()), ids=repr)
def test_out_of_domain_static_arguments_are_named_errors(name, arg, bad, error):
    with pytest.raises(error, match=f"`{arg}`"):
        SPECS[name].call(**{arg: bad})


def test_every_function_has_a_static_argument_case():
    """Each function's static arguments (base, axis, or bernoulli_kl's Python-number rho) are walked."""
    assert {name for name, *_ in _static_cases()} == set(SPECS)


# ------------------------------------------------------------------------------ extreme values


def _probability_extremes(dtype):
    """Non-negative inputs with zeros, ones and the smallest values the dtype holds."""
    tiny = float(jnp.finfo(dtype).tiny)
    return [
        (jnp.array([1.0, 0.0, 0.0], dtype), jnp.array([0.0, 0.0, 1.0], dtype)),  # disjoint
        (jnp.array([1.0, 0.0, 0.0], dtype), jnp.array([1.0, 0.0, 0.0], dtype)),  # equal, with zeros
        (jnp.array([1.0 - 2 * tiny, tiny, tiny], dtype), jnp.array([0.25, 0.25, 0.5], dtype)),
        (jnp.array([0.0, 0.0, 0.0], dtype), jnp.array([0.0, 0.0, 0.0], dtype)),  # all zero
    ]


def _logit_extremes(dtype):
    inf = jnp.inf
    return [
        (jnp.array([1e4, -1e4, 0.0], dtype), jnp.array([-1e4, 1e4, 0.0], dtype)),
        (jnp.array([0.0, -inf, -inf], dtype), jnp.array([3.0, -1e4, 0.0], dtype)),  # zero probabilities
        (jnp.array([inf, 0.0, -1.0], dtype), jnp.array([0.0, inf, -inf], dtype)),  # +inf: the limit
        (jnp.array([-1e4, -1e4, -1e4], dtype), jnp.array([1e4, 1e4, 1e4], dtype)),
    ]


# Extreme cases whose true value is +inf: the value is +inf and the gradient is not NaN.
INFINITE_VALUE = {
    ("cross_entropy", 0), ("kl_divergence", 0),  # q = 0 < p
    ("cross_entropy_from_logits", 2), ("kl_divergence_from_logits", 2),  # log q = -inf where p > 0
    ("bernoulli_kl", 0),  # rho_hat in {0, 1} != rho
}


def _extreme_inputs(name, dtype):
    spec = SPECS[name]
    if name == "mutual_information":
        z = jnp.zeros((2, 2), dtype)
        return [{"joint": jnp.eye(2, dtype=dtype) / 2}, {"joint": z.at[0, 0].set(1)}, {"joint": z},
                {"joint": z.at[0, 0].set(1 - 3 * jnp.finfo(dtype).tiny).at[1, 1].set(jnp.finfo(dtype).tiny)}]
    if name == "gaussian_kl":
        big = jnp.array([1e4, -1e4, 0.0], dtype)
        return [dict(mean_q=big, logvar_q=jnp.zeros(3, dtype), mean_p=-big, logvar_p=jnp.full(3, 20.0, dtype)),
                dict(mean_q=big, logvar_q=-jnp.full(3, 20.0, dtype), mean_p=big, logvar_p=jnp.zeros(3, dtype))]
    if name == "wasserstein_1d":
        return [dict(x=a, y=b) for a, b in _logit_extremes(dtype)[:1]] + [
            # Matching infinities are 0 apart (sorted: -inf, 0, inf against -inf, 1, inf): W1 = 1/3.
            dict(x=jnp.array([jnp.inf, 0.0, -jnp.inf], dtype), y=jnp.array([-jnp.inf, 1.0, jnp.inf], dtype))]
    pairs = _logit_extremes(dtype) if spec.logits else _probability_extremes(dtype)
    names = list(spec.arrays)
    return [dict(zip(names, pair[: len(names)])) for pair in pairs]


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_extreme_values_give_finite_values_and_gradients(name, dtype):
    spec = SPECS[name]
    for i, arrays in enumerate(_extreme_inputs(name, dtype)):
        assert spec.call(**arrays).dtype == dtype  # half precision in, half precision out
        value, grads = _total(spec, arrays)
        if (name, i) in INFINITE_VALUE:
            assert value == math.inf, (name, i, value)
            assert not any(np.any(np.isnan(g)) for g in grads), (name, i, grads)
        else:
            assert math.isfinite(value), (name, i, value)
            assert all(np.all(np.isfinite(g)) for g in grads), (name, i, grads)


# ------------------------------------------------------------------------------ through softmax / sigmoid

SATURATED = [[30.0, -30.0, 0.0], [1e4, -1e4, 0.0], [0.0, -12.0, -17.0], [0.0, -85.0, -95.0], [60.0, 0.0, -40.0]]
ONE_HOT = [1.0, 0.0, 0.0]
SPREAD = [0.2, 0.3, 0.5]


def _through(name, dtype, target):
    sm, sg = jax.nn.softmax, jax.nn.sigmoid
    t = jnp.asarray(target, dtype)
    return {
        "entropy": [lambda l: dv.entropy(sm(l))],
        "cross_entropy": [lambda l: dv.cross_entropy(t, sm(l)), lambda l: dv.cross_entropy(sm(l), t)],
        "kl_divergence": [lambda l: dv.kl_divergence(t, sm(l)), lambda l: dv.kl_divergence(sm(l), t)],
        "js_divergence": [lambda l: dv.js_divergence(t, sm(l)), lambda l: dv.js_divergence(sm(l), t),
                          lambda l: dv.js_divergence(sm(l), sm(-l))],
        "mutual_information": [lambda l: dv.mutual_information(sm(jnp.concatenate([l, -l[:1]])).reshape(2, 2))],
        "entropy_from_logits": [lambda l: dv.entropy_from_logits(l)],
        "cross_entropy_from_logits": [lambda l: dv.cross_entropy_from_logits(jnp.log(t), l)],
        "kl_divergence_from_logits": [lambda l: dv.kl_divergence_from_logits(jnp.log(t), l),
                                      lambda l: dv.kl_divergence_from_logits(l, -l)],
        "js_divergence_from_logits": [lambda l: dv.js_divergence_from_logits(l, jnp.log(t))],
        "bernoulli_kl": [lambda l: jnp.sum(dv.bernoulli_kl(t, sg(l))), lambda l: jnp.sum(dv.bernoulli_kl(sg(l), t)),
                         lambda l: jnp.sum(dv.bernoulli_kl(sg(l), sg(-l)))],
        "gaussian_kl": [lambda l: dv.gaussian_kl(l, l), lambda l: dv.gaussian_kl(jnp.zeros_like(l), l, 0.0, -l)],
        "wasserstein_1d": [lambda l: dv.wasserstein_1d(l, -l)],
    }[name]


def _q_gradient_out_of_range(name, logits, dtype, target):
    """The documented exception: d/dq of -p log q is -p / q, beyond the dtype for tiny q."""
    if name not in ("cross_entropy", "kl_divergence"):
        return False
    q = np.asarray(jax.nn.softmax(jnp.asarray(logits, dtype)), np.float64)
    t = np.asarray(target, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t > 0, t / q, 0.0)
    return bool(np.any(ratio > float(jnp.finfo(dtype).max)))


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_finite_value_means_finite_gradient_at_saturated_inputs(name, dtype):
    """Issue 15: a finite value has a finite gradient at saturated softmax/sigmoid inputs
    (where the value is +inf, e.g. q rounded to 0 under p > 0, only the value is asserted)."""
    checked = 0
    for target in (ONE_HOT, SPREAD):
        for k, fn in enumerate(_through(name, dtype, target)):
            for logits in SATURATED:
                l = jnp.asarray(logits, dtype)
                value, grad = jax.value_and_grad(lambda l, fn=fn: fn(l).astype(jnp.float32))(l)
                if not bool(jnp.isfinite(value)):
                    assert float(value) == math.inf, (name, k, logits, value)  # never NaN
                    continue
                if _q_gradient_out_of_range(name, logits, dtype, target):
                    continue  # documented in the module notes (use the *_from_logits variant)
                assert bool(jnp.all(jnp.isfinite(grad))), (name, k, target, logits, grad)
                checked += 1
    assert checked >= 5, checked
