"""Bad and extreme inputs for every public name of genjax.gan (issue 15).

Each function is walked with wrong dtypes (complex, strings, None, objects), wrong shapes,
empty batches, bad keys and callables, out-of-domain static arguments (NaN, negative, out of
range, strings such as "0.3", booleans, None) and extreme values (logits +-1e4 and +-inf, zero
densities, float16 and bfloat16 inputs). Every case asserts one of two outcomes: a clear error
(ValueError or TypeError whose message names the argument), or a finite result with a finite
gradient; where the true value is infinite (a discriminator fooled by infinite logits) the
value is +inf and the gradient not NaN. The reference is the documented policy
(genjax._checks and the docstrings of genjax.gan).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import gan

R = jnp.array([0.5, -1.0, 2.0])  # logits / scores of a batch of 3
F = jnp.array([1.0, -0.5])
X = jnp.ones((4, 2))
W = jnp.array([3.0, 4.0])
KEY = jax.random.key(0)
HALF = (jnp.float32, jnp.bfloat16, jnp.float16)


def _critic(b):
    return b @ W.astype(b.dtype)


def _state():
    return gan.historical_average_init({"w": jnp.zeros(2), "b": jnp.zeros(())})


# name -> (function of keyword arguments, the good keyword arguments)
CALLS = {
    "discriminator_loss": (gan.discriminator_loss, dict(real_logits=R, fake_logits=F, label_smoothing=0.1)),
    "generator_loss": (gan.generator_loss, dict(fake_logits=F, saturating=False)),
    "minimax_value": (gan.minimax_value, dict(real_logits=R, fake_logits=F)),
    "optimal_discriminator": (gan.optimal_discriminator, dict(p_real=jnp.array([0.2, 0.0]), p_gen=jnp.array([0.1, 0.0]))),
    "wasserstein_critic_loss": (gan.wasserstein_critic_loss, dict(real_scores=R, fake_scores=F)),
    "wasserstein_generator_loss": (gan.wasserstein_generator_loss, dict(fake_scores=F)),
    "gradient_penalty": (gan.gradient_penalty, dict(key=KEY, critic_fn=_critic, real=X, fake=-X, target=1.0)),
    "r1_penalty": (gan.r1_penalty, dict(critic_fn=_critic, real=X)),
    "clip_weights": (gan.clip_weights, dict(params={"w": W}, c=0.01)),
    "feature_matching_loss": (gan.feature_matching_loss, dict(real_features=X, fake_features=-X[:3])),
    "historical_average_init": (gan.historical_average_init, dict(params={"w": W})),
    "historical_average_update": (gan.historical_average_update,
                                  dict(state=None, params={"w": W[:2], "b": jnp.ones(())}, decay=0.9)),
    "historical_average_penalty": (gan.historical_average_penalty, dict(params={"w": W[:2], "b": jnp.ones(())}, state=None)),
    "instance_noise": (gan.instance_noise, dict(key=KEY, x=X, std=0.1)),
    "annealed_noise_std": (gan.annealed_noise_std, dict(step=3, initial_std=0.1, anneal_steps=10)),
    "pack": (gan.pack, dict(x=X, num_packed=2)),
    "mode_metrics": (gan.mode_metrics, dict(samples=X, modes=jnp.zeros((3, 2)), std=0.1, threshold=3.0)),
    # The state NamedTuple is walked through the functions that take it (a non-state is a
    # TypeError naming `state`, see below) and as a pytree under jit.
    "HistoricalAverage": (lambda state: jax.jit(lambda s: s)(state), dict(state=None)),
}


def call(name, **overrides):
    fn, kwargs = CALLS[name]
    kwargs = {**kwargs, **overrides}
    if kwargs.get("state", 0) is None:
        kwargs["state"] = _state()
    return fn(**kwargs)


def test_the_walk_covers_every_public_name():
    missing, extra = set(gan.__all__) - set(CALLS), set(CALLS) - set(gan.__all__)
    assert not missing and not extra, f"not walked: {sorted(missing)}; not public: {sorted(extra)}"


def test_every_call_is_good_as_given():
    for name in CALLS:
        jax.tree.map(lambda v: np.asarray(v), call(name))  # runs without error
    assert isinstance(call("HistoricalAverage"), gan.HistoricalAverage)


# ------------------------------------------------------------------------------ dtypes


ARRAY_ARGS = {
    "discriminator_loss": ["real_logits", "fake_logits"],
    "generator_loss": ["fake_logits"],
    "minimax_value": ["real_logits", "fake_logits"],
    "optimal_discriminator": ["p_real", "p_gen"],
    "wasserstein_critic_loss": ["real_scores", "fake_scores"],
    "wasserstein_generator_loss": ["fake_scores"],
    "gradient_penalty": ["real", "fake"],
    "r1_penalty": ["real"],
    "feature_matching_loss": ["real_features", "fake_features"],
    "instance_noise": ["x"],
    "pack": ["x"],
    "mode_metrics": ["samples", "modes"],
}
BAD_VALUES = {
    "complex": jnp.ones((4, 2), jnp.complex64),
    "string": "0.5",
    "None": None,
    "objects": np.array([[object()] * 2] * 4),
}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("name", sorted(ARRAY_ARGS))
def test_non_real_arrays_are_a_type_error_naming_the_argument(name, bad):
    for arg in ARRAY_ARGS[name]:
        with pytest.raises(TypeError, match=f"`{arg}`"):
            call(name, **{arg: BAD_VALUES[bad]})


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("name", ["clip_weights", "historical_average_init", "historical_average_update",
                                  "historical_average_penalty"])
def test_non_float_parameter_leaves_are_a_type_error_naming_the_leaf(name, bad):
    value = BAD_VALUES[bad]
    if value is None:  # None is an empty subtree for jax.tree, not a leaf: a structure mismatch
        if name in ("clip_weights", "historical_average_init"):
            return  # {"w": None} is a tree with no leaves: nothing to clip or average
        with pytest.raises(ValueError, match="structure"):
            call(name, params={"w": None, "b": jnp.ones(())})
        return
    params = {"w": value, "b": jnp.ones(())}
    with pytest.raises(TypeError, match=r"params\['w'\]"):
        call(name, params=params)
    with pytest.raises(TypeError, match=r"params\['w'\]"):
        call(name, params={"w": jnp.array([1, 2]), "b": jnp.ones(())})  # integers too


def test_step_must_be_an_integer_and_state_a_historical_average():
    for bad in (2.5, jnp.array([1.0]), "3", None, True):
        with pytest.raises(TypeError, match="`step`"):
            call("annealed_noise_std", step=bad)
    for bad in ({"w": jnp.zeros(2)}, (jnp.zeros(2), 1)):
        for name in ("historical_average_update", "historical_average_penalty"):
            with pytest.raises(TypeError, match="`state`"):
                call(name, state=bad)
    assert float(call("annealed_noise_std", step=jnp.array(5, jnp.int16))) == pytest.approx(0.05)


@pytest.mark.parametrize("name", sorted(ARRAY_ARGS))
def test_integer_and_boolean_arrays_are_promoted(name):
    """genjax._checks: integer and boolean inputs become the default float dtype."""
    fn, kwargs = CALLS[name]
    for cast in (lambda v: jnp.asarray(v > 0, jnp.int32), lambda v: jnp.asarray(v > 0)):
        out = call(name, **{arg: cast(kwargs[arg]) for arg in ARRAY_ARGS[name]})
        leaves = [v for v in jax.tree.leaves(out) if jnp.issubdtype(v.dtype, jnp.floating)]
        assert leaves and all(v.dtype == jnp.float32 for v in leaves), name


# ------------------------------------------------------------------------------ shapes and empty batches


WRONG_SHAPES = {
    "optimal_discriminator": [({"p_gen": jnp.ones(3)}, "p_gen")],
    "gradient_penalty": [({"fake": jnp.ones((3, 2))}, "fake"), ({"real": jnp.ones(()), "fake": jnp.ones(())}, "real"),
                         ({"critic_fn": lambda b: b}, "critic_fn")],
    "r1_penalty": [({"real": jnp.ones(())}, "real"), ({"critic_fn": lambda b: jnp.sum(b)}, "critic_fn")],
    "feature_matching_loss": [({"fake_features": jnp.ones((4, 3))}, "real_features"),
                              ({"real_features": jnp.ones(())}, "real_features")],
    "historical_average_update": [({"params": {"w": jnp.ones((3, 2)), "b": jnp.ones(())}}, r"params\['w'\]"),
                                  ({"params": {"w": jnp.ones(2), "b": jnp.ones(2)}}, r"params\['b'\]"),
                                  ({"params": {"w": jnp.ones(2)}}, "params")],
    "historical_average_penalty": [({"params": {"w": jnp.ones(1), "b": jnp.ones(())}}, r"params\['w'\]")],
    "pack": [({"x": jnp.ones(4)}, "x"), ({"x": jnp.ones((5, 2))}, "x"), ({"x": jnp.ones(())}, "x")],
    "mode_metrics": [({"modes": jnp.zeros((3, 3))}, "modes"), ({"samples": jnp.zeros(2)}, "samples")],
}
EMPTY = {
    "discriminator_loss": ["real_logits", "fake_logits"],
    "generator_loss": ["fake_logits"],
    "minimax_value": ["real_logits", "fake_logits"],
    "wasserstein_critic_loss": ["real_scores", "fake_scores"],
    "wasserstein_generator_loss": ["fake_scores"],
    "gradient_penalty": ["real"],
    "r1_penalty": ["real"],
    "feature_matching_loss": ["real_features", "fake_features"],
    "pack": ["x"],
    "mode_metrics": ["samples", "modes"],
}


@pytest.mark.parametrize("name", sorted(WRONG_SHAPES))
def test_wrong_shapes_are_a_value_error_naming_the_argument(name):
    for overrides, arg in WRONG_SHAPES[name]:
        with pytest.raises(ValueError, match=f"`{arg}" if "[" not in arg else arg):
            call(name, **overrides)


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_batches_are_a_value_error_naming_the_argument(name):
    for arg in EMPTY[name]:
        shape = (0, 2) if name in ("gradient_penalty", "r1_penalty", "feature_matching_loss", "pack",
                                   "mode_metrics") else (0,)
        overrides = {arg: jnp.ones(shape)}
        if name == "gradient_penalty":
            overrides["fake"] = jnp.ones(shape)
        with pytest.raises(ValueError, match=f"`{arg}`.*empty"):
            call(name, **overrides)


def test_empty_arrays_without_a_mean_pass_through():
    """No mean is taken: an empty batch or an empty pytree is returned as it came."""
    assert call("instance_noise", x=jnp.ones((0, 2))).shape == (0, 2)
    assert call("optimal_discriminator", p_real=jnp.ones(0), p_gen=jnp.ones(0)).shape == (0,)
    assert call("clip_weights", params={}) == {}
    assert call("annealed_noise_std", step=jnp.zeros(0, jnp.int32)).shape == (0,)


# ------------------------------------------------------------------------------ keys and callables


@pytest.mark.parametrize("name", ["gradient_penalty", "instance_noise"])
def test_keys_are_checked(name):
    for bad, error in [(None, TypeError), (jnp.zeros(2), TypeError), (jnp.zeros(3, jnp.uint32), TypeError),
                       ("0", TypeError), (jax.random.split(KEY, 2), ValueError)]:
        with pytest.raises(error, match="`key`"):
            call(name, key=bad)
    legacy = jax.random.PRNGKey(0)  # a legacy uint32[2] key is accepted
    assert np.all(np.isfinite(np.asarray(call(name, key=legacy))))


@pytest.mark.parametrize("name", ["gradient_penalty", "r1_penalty"])
def test_critic_fn_must_be_callable(name):
    for bad in (None, "critic", W):
        with pytest.raises(TypeError, match="`critic_fn`"):
            call(name, critic_fn=bad)


# ------------------------------------------------------------------------------ static arguments

NAN, INF = math.nan, math.inf
STATICS = {
    # name: [(argument, bad value, error)]
    "discriminator_loss": [("label_smoothing", v, e) for v, e in
                           [(NAN, ValueError), (-0.1, ValueError), (1.0, ValueError), (INF, ValueError),
                            ("0.1", TypeError), (True, TypeError), (None, TypeError),
                            (jnp.ones(2), ValueError)]],
    "generator_loss": [("saturating", v, TypeError) for v in ("yes", 1, None, 0.0)],
    "gradient_penalty": [("target", v, e) for v, e in
                         [(NAN, ValueError), (-1.0, ValueError), (INF, ValueError), ("1", TypeError),
                          (True, TypeError), (None, TypeError)]],
    "clip_weights": [("c", v, e) for v, e in
                     [(NAN, ValueError), (0.0, ValueError), (-0.01, ValueError), (INF, ValueError),
                      ("0.01", TypeError), (True, TypeError), (None, TypeError)]],
    "historical_average_update": [("decay", v, e) for v, e in
                                  [(NAN, ValueError), (-0.1, ValueError), (1.1, ValueError), (INF, ValueError),
                                   ("0.9", TypeError), (True, TypeError)]],
    "instance_noise": [("std", v, e) for v, e in
                       [(NAN, ValueError), (-0.1, ValueError), (INF, ValueError), ("0.1", TypeError),
                        (True, TypeError), (None, TypeError), (jnp.ones(2), ValueError)]],
    "annealed_noise_std": [("initial_std", v, e) for v, e in
                           [(NAN, ValueError), (-0.1, ValueError), (INF, ValueError), ("0.1", TypeError),
                            (True, TypeError)]]
    + [("anneal_steps", v, e) for v, e in
       [(0, ValueError), (-5, ValueError), (2.5, TypeError), (10.0, TypeError), (True, TypeError),
        ("10", TypeError), (None, TypeError)]]
    + [("step", -1, ValueError), ("step", jnp.array([2, -3]), ValueError)],
    "pack": [("num_packed", v, e) for v, e in
             [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError), ("2", TypeError),
              (None, TypeError)]],
    "mode_metrics": [(arg, v, e) for arg in ("std", "threshold") for v, e in
                     [(NAN, ValueError), (0.0, ValueError), (-1.0, ValueError), (INF, ValueError),
                      ("0.1", TypeError), (True, TypeError), (None, TypeError)]],
}


@pytest.mark.parametrize("name, arg, bad, error",
                         [(n, a, v, e) for n, cases in sorted(STATICS.items()) for a, v, e in cases], ids=repr)
def test_out_of_domain_static_arguments_are_named_errors(name, arg, bad, error):
    with pytest.raises(error, match=f"`{arg}`"):
        call(name, **{arg: bad})


def test_static_argument_walk_covers_every_static_argument():
    """Every static (non-array, non-callable, non-key) argument of the module is walked."""
    walked = {(n, a) for n, cases in STATICS.items() for a, _, _ in cases}
    want = {("discriminator_loss", "label_smoothing"), ("generator_loss", "saturating"),
            ("gradient_penalty", "target"), ("clip_weights", "c"), ("historical_average_update", "decay"),
            ("instance_noise", "std"), ("annealed_noise_std", "initial_std"),
            ("annealed_noise_std", "anneal_steps"), ("pack", "num_packed"), ("mode_metrics", "std"),
            ("mode_metrics", "threshold")}
    assert want <= walked


def test_traced_static_numbers_are_used_as_given():
    """Traced values cannot be checked at trace time; each docstring says what they do."""
    out = jax.jit(lambda a: gan.discriminator_loss(R, F, a))(0.1)
    np.testing.assert_allclose(out, gan.discriminator_loss(R, F, 0.1), rtol=1e-6)
    assert float(jax.jit(lambda s: gan.annealed_noise_std(jnp.int32(5), s, 10))(0.2)) == pytest.approx(0.1)
    np.testing.assert_allclose(jax.jit(lambda c: gan.clip_weights({"w": W}, c))(0.5)["w"], [0.5, 0.5])


# ------------------------------------------------------------------------------ extreme values


LOGIT_LOSSES = {
    "discriminator_loss": lambda r, f: gan.discriminator_loss(r, f),
    "discriminator_loss(smoothed)": lambda r, f: gan.discriminator_loss(r, f, 0.1),
    "generator_loss": lambda r, f: gan.generator_loss(f),
    "generator_loss(saturating)": lambda r, f: gan.generator_loss(f, saturating=True),
    "minimax_value": gan.minimax_value,
    "wasserstein_critic_loss": gan.wasserstein_critic_loss,
    "wasserstein_generator_loss": lambda r, f: gan.wasserstein_generator_loss(f),
    "feature_matching_loss": lambda r, f: gan.feature_matching_loss(r[:, None], f[:, None]),
}


def _expected_infinite(name, r, f):
    """Whether the true value at logits (r, f) is infinite (a limit), per the loss's formula."""
    if math.isfinite(r) and math.isfinite(f):
        return False
    return {
        # -log D(x) = softplus(-r) is inf at r = -inf; -log(1 - D) = softplus(f) at f = +inf;
        # smoothing adds a softplus(r), inf at r = +inf.
        "discriminator_loss": r == -INF or f == INF,
        "discriminator_loss(smoothed)": math.isinf(r) or f == INF,
        "generator_loss": f == -INF,
        "generator_loss(saturating)": f == INF,
        "minimax_value": r == -INF or f == INF,
        "wasserstein_critic_loss": True,  # an infinite score: infinite (r, f of opposite sign here)
        "wasserstein_generator_loss": math.isinf(f),
        "feature_matching_loss": True,
    }[name]


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_extreme_logits_give_finite_or_limit_values_and_finite_gradients(name, dtype):
    fn = LOGIT_LOSSES[name]
    for r, f in [(1e4, -1e4), (-1e4, 1e4), (1e4, 1e4), (-1e4, -1e4), (INF, -INF), (-INF, INF), (0.0, 0.0)]:
        real, fake = jnp.full((3,), r, dtype), jnp.full((2,), f, dtype)
        value, grads = jax.value_and_grad(lambda a, b: fn(a, b).astype(jnp.float32), argnums=(0, 1))(real, fake)
        value = float(value)
        if _expected_infinite(name, r, f):
            assert math.isinf(value), (name, r, f, value)
            assert not any(np.any(np.isnan(np.asarray(g, np.float32))) for g in grads), (name, r, f, grads)
            continue
        # Finite, unless the float32 value itself is beyond the half-precision dtype (feature
        # matching of +-1e4 features: 4e8 > 65504 in float16): then +inf, gradients finite.
        ref = float(fn(real.astype(jnp.float32), fake.astype(jnp.float32)))
        if abs(ref) > float(jnp.finfo(dtype).max):
            assert math.isinf(value), (name, r, f, value)
        else:
            assert math.isfinite(value), (name, r, f, value)
        assert all(np.all(np.isfinite(np.asarray(g, np.float32))) for g in grads), (name, r, f, grads)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_optimal_discriminator_at_extreme_densities(dtype):
    """Zero densities give 1/2; tiny and huge ones the ratio; gradients finite everywhere."""
    tiny, big = float(jnp.finfo(dtype).tiny), float(jnp.finfo(dtype).max) / 4
    pr = jnp.array([0.0, tiny, big, 0.0, 1.0], dtype)
    pg = jnp.array([0.0, tiny, big, 1.0, 0.0], dtype)

    def total(a, b):
        return jnp.sum(gan.optimal_discriminator(a, b).astype(jnp.float32))

    d = gan.optimal_discriminator(pr, pg)
    assert d.dtype == dtype
    np.testing.assert_allclose(np.asarray(d, np.float32), [0.5, 0.5, 0.5, 0.0, 1.0])
    grads = jax.grad(total, argnums=(0, 1))(pr, pg)
    assert all(np.all(np.isfinite(np.asarray(g, np.float32))) for g in grads), grads


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_penalties_in_half_precision(dtype):
    """The gradient norms are reduced in float32: ||(30, 40)|| = 50 in float16, whose squares
    (900 + 1600) are fine, and ||(3000, 4000)||^2 = 2.5e7, beyond float16, gives +inf only in the
    float16 result of r1_penalty (not NaN), while gradient_penalty's (5000 - 1)^2 too is +inf."""
    x = jnp.ones((4, 2), dtype)
    for scale, finite in ((10.0, True), (1000.0, dtype != jnp.float16)):
        w = (W * scale).astype(dtype)
        for fn in (lambda w: gan.gradient_penalty(KEY, lambda b: b @ w, x, -x),
                   lambda w: gan.r1_penalty(lambda b: b @ w, x)):
            value, grad = jax.value_and_grad(lambda w: fn(w).astype(jnp.float32))(w)
            assert fn(w).dtype == dtype
            assert math.isfinite(float(value)) == finite, (dtype, scale, float(value))
            assert not bool(jnp.any(jnp.isnan(grad)))
            if finite:
                assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: jnp.dtype(d).name)
def test_mode_metrics_and_noise_in_half_precision(dtype):
    """Distances in float32: coordinates of 300 square to 9e4, beyond float16, without inf."""
    modes = jnp.array([[300.0, 0.0], [0.0, 300.0]], dtype)
    samples = jnp.array([[300.0, 0.0], [0.0, 299.5], [150.0, 150.0]], dtype)
    m = gan.mode_metrics(samples, modes, 1.0)
    assert int(m["modes_captured"]) == 2 and float(m["high_quality"]) == pytest.approx(2 / 3)
    assert math.isfinite(float(m["reverse_kl"]))
    noisy = gan.instance_noise(KEY, samples, 0.5)
    assert noisy.dtype == dtype and bool(jnp.all(jnp.isfinite(noisy)))
    avg = gan.historical_average_update(gan.historical_average_init({"w": samples}), {"w": -samples})
    np.testing.assert_allclose(np.asarray(avg.average["w"], np.float32), 0.0)
    assert avg.average["w"].dtype == dtype
