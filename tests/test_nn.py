"""genjax.nn: the convolution's custom gradient and the classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from genjax import nn


def _reference_conv(x, w, strides, padding):
    strides = (strides, strides) if isinstance(strides, int) else strides
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


CASES = [
    (1, "SAME", (4, 9, 9, 3), (3, 3)),
    (2, "SAME", (4, 9, 9, 3), (3, 3)),
    (2, "VALID", (2, 10, 10, 3), (4, 4)),
    ((1, 2), ((2, 1), (0, 3)), (2, 8, 11, 3), (3, 4)),
]


@pytest.mark.parametrize("strides,padding,x_shape,k", CASES)
def test_conv2d_value_and_gradients_match_xla_convolution(strides, padding, x_shape, k):
    """Reference: jax.grad of lax.conv_general_dilated (XLA's own transpose rules)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*k, x_shape[-1], 5)), jnp.float32)
    ref = lambda x, w: jnp.sum(jnp.sin(_reference_conv(x, w, strides, padding)))
    mine = lambda x, w: jnp.sum(jnp.sin(nn.conv2d(x, w, strides, padding)))
    np.testing.assert_allclose(mine(x, w), ref(x, w), rtol=1e-5)
    for a, b in zip(jax.grad(mine, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv2d_check_grads():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32) * 0.3
    check_grads(lambda x, w: nn.conv2d(x, w, 2, "SAME"), (x, w), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_conv2d_gradient_inside_scan_equals_outside():
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.normal(size=(3, 2, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 4, 6)), jnp.float32)
    g = jax.grad(lambda w, x: jnp.sum(nn.conv2d(x, w) ** 2))
    in_scan = jax.jit(lambda w, xs: jax.lax.scan(lambda c, x: (c + g(w, x), None), jnp.zeros_like(w), xs)[0])
    np.testing.assert_allclose(in_scan(w, xs), sum(g(w, x) for x in xs), rtol=1e-5, atol=1e-4)


def test_conv2d_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="3 channels but the kernel expects 2"):
        nn.conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((3, 3, 2, 1)))
    with pytest.raises(ValueError, match="padding must be"):
        nn.conv2d(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 1)), padding="FULL")


def test_conv_layer_has_flax_conv_parameter_layout_and_output():
    import flax.linen as fnn

    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, 7, 3)), jnp.float32)
    mine = nn.Conv(8, (3, 3), strides=2)
    theirs = fnn.Conv(8, (3, 3), strides=2)
    params = mine.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, theirs.init(jax.random.key(0), x))
    np.testing.assert_allclose(mine.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)


def test_classifier_shapes_and_features():
    model = nn.MnistClassifier(features_dim=16)
    x = jnp.zeros((5, 28, 28, 1))
    params = model.init(jax.random.key(0), x)["params"]
    assert model.apply({"params": params}, x).shape == (5, 10)
    assert model.apply({"params": params}, x, method=model.features).shape == (5, 16)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        model.apply({"params": params}, jnp.zeros((28, 28, 1)))


def test_cross_entropy_loss_matches_log_softmax_and_checks_shapes():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, 2])
    expected = -jnp.array([jax.nn.log_softmax(logits[0])[0], jnp.log(1 / 3)])  # log-softmax definition
    np.testing.assert_allclose(nn.cross_entropy_loss(logits, labels), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        nn.cross_entropy_loss(logits, jnp.array([0, 1, 2]))
