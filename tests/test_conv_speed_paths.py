"""The CPU speed paths of the convolutional networks give the plain path's values and gradients.

References: `flax.linen.Conv` and `jax.grad` / `jax.jvp` of `lax.conv_general_dilated` (XLA's own
transpose rules), and the same networks with the workarounds switched off
(`genjax._backend.disabled`). Shapes are chosen so that every branch of the speed paths runs:
output grids of >= 100 positions (the split weight gradient) with batches and channel counts
that are not multiples of the 16-wide blocks.
"""

from __future__ import annotations

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genjax import _backend, nn
from genjax.nn import _conv

# (strides, padding, x [B, H, W, C], kernel (kh, kw), output channels): grids 12x12 = 144 >= 100
SPLIT_CASES = [
    (1, "SAME", (20, 12, 12, 3), (3, 3), 20),  # 16 + 4 examples, 16 + 4 output channels
    (1, "SAME", (18, 10, 10, 5), (3, 3), 1),  # one output channel (a decoder's last layer)
    (2, "SAME", (17, 24, 24, 2), (4, 4), 33),  # stride 2: a dilated window
    (1, "VALID", (33, 14, 14, 4), (3, 3), 8),  # fewer than 16 output channels, 3 batch blocks
    (1, ((2, 0), (1, 1)), (16, 10, 10, 2), (1, 1), 17),  # exactly one batch block
]


def _reference_conv(x, w, strides, padding):
    strides = (strides, strides) if isinstance(strides, int) else strides
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _inputs(x_shape, k, out, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*k, x_shape[-1], out)) / np.sqrt(np.prod(k) * x_shape[-1]), jnp.float32)
    return x, w


def _close(a, b, rtol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b))))


def test_the_cases_take_the_split_path():
    for strides, padding, x_shape, k, out in SPLIT_CASES:
        strides_ = (strides, strides) if isinstance(strides, int) else strides
        pads = _conv._pads(x_shape, (*k, x_shape[-1], out), strides_, padding)
        y = jax.eval_shape(lambda x, w: _reference_conv(x, w, strides, padding),
                           jax.ShapeDtypeStruct(x_shape, jnp.float32),
                           jax.ShapeDtypeStruct((*k, x_shape[-1], out), jnp.float32))
        assert y.shape[1] * y.shape[2] >= _conv._SPLIT_MIN_WINDOW and max(x_shape[0], out) > 16, pads


@pytest.mark.parametrize("strides,padding,x_shape,k,out", SPLIT_CASES)
def test_split_weight_gradient_equals_xla_autodiff_and_the_single_convolution(strides, padding, x_shape, k, out):
    """Reverse mode, jitted: jax.grad of lax.conv_general_dilated, and the CPU path with
    ``conv_wgrad_split`` off (one convolution)."""
    x, w = _inputs(x_shape, k, out)
    loss = lambda conv: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding))), (0, 1)))
    ref = loss(_reference_conv)(x, w)
    got = loss(nn.conv2d)(x, w)
    with _backend.disabled("conv_wgrad_split"):
        single = loss(nn.conv2d)(x, w)
    for a, b, c in zip(got, ref, single):
        _close(a, b)
        _close(a, c)


@pytest.mark.parametrize("strides,padding,x_shape,k,out", SPLIT_CASES[:3])
def test_split_path_forward_mode_and_scan(strides, padding, x_shape, k, out):
    """jax.jvp against lax.conv's, and the weight gradient inside lax.scan against outside."""
    x, w = _inputs(x_shape, k, out, seed=1)
    tx, tw = _inputs(x_shape, k, out, seed=2)
    y, ty = jax.jvp(lambda x, w: nn.conv2d(x, w, strides, padding), (x, w), (tx, tw))
    y_ref, ty_ref = jax.jvp(lambda x, w: _reference_conv(x, w, strides, padding), (x, w), (tx, tw))
    _close(y, y_ref)
    _close(ty, ty_ref)
    g = jax.grad(lambda w, x: jnp.sum(nn.conv2d(x, w, strides, padding) ** 2))
    xs = jnp.stack([x, tx])
    in_scan = jax.jit(lambda w, xs: lax.scan(lambda c, x: (c + g(w, x), None), jnp.zeros_like(w), xs)[0])
    _close(in_scan(w, xs), g(w, x) + g(w, tx))


def test_conv_layer_gradients_equal_flax_conv_on_the_split_path():
    """genjax.nn.Conv and flax.linen.Conv with the same parameters: loss, parameter and input
    gradients (reverse mode) and a JVP (forward mode), at a 28x28 grid with a batch of 20."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(20, 28, 28, 3)), jnp.float32)
    mine, theirs = nn.Conv(18, (3, 3), name="c"), flax_nn.Conv(18, (3, 3), name="c")
    params = theirs.init(jax.random.key(0), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
    f_mine = lambda p, x: jnp.mean(jnp.tanh(mine.apply(p, x)) ** 2)
    f_theirs = lambda p, x: jnp.mean(jnp.tanh(theirs.apply(p, x)) ** 2)
    lm, gm = jax.jit(jax.value_and_grad(f_mine, (0, 1)))(params, x)
    lt, gt = jax.jit(jax.value_and_grad(f_theirs, (0, 1)))(params, x)
    _close(lm, lt)
    for a, b in zip(jax.tree.leaves(gm), jax.tree.leaves(gt)):
        _close(a, b)
    t = jax.tree.map(jnp.ones_like, params)
    _close(jax.jvp(lambda p: f_mine(p, x), (params,), (t,))[1], jax.jvp(lambda p: f_theirs(p, x), (params,), (t,))[1])
