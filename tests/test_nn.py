"""genjax.nn: the convolution's CPU path (values and every AD mode against lax.conv_general_dilated and
flax.linen.Conv), every layer in every AD mode against the plain path, and the classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from genjax import _backend, nn


def _reference_conv(x, w, strides, padding):
    strides = (strides, strides) if isinstance(strides, int) else strides
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _random_like(tree, seed):
    """Standard normal arrays shaped as `tree`'s leaves, from NumPy: `jax.random.normal` would
    compile one RNG program per shape (seconds each for a 4-D kernel on XLA:CPU), and again after
    every `_backend.disabled` block (which clears JAX's caches)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(jnp.shape(v)).astype(jnp.result_type(v))), tree)


def _params(module, *args, **kwargs):
    """Random variables for `module` on these inputs, shaped by `module.init` (traced, not run) and
    drawn with NumPy as in `_random_like`: kernels N(0, 1 / fan_in), the rest N(0, 0.5^2). (Any
    values do for comparing two paths; a real init compiles an RNG program per parameter shape,
    which took most of these tests' time.)"""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(0)

    def draw(s):
        scale = float(np.prod(s.shape[:-1])) ** -0.5 if len(s.shape) >= 2 else 0.5
        return jnp.asarray((scale * rng.standard_normal(s.shape)).astype(s.dtype))

    return jax.tree.map(draw, shapes)


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
    params = _params(mine, x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, jax.eval_shape(theirs.init, jax.random.key(0), x))
    np.testing.assert_allclose(mine.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)


def _upsample_then_conv(x, w):
    """The literal resize-convolution: nearest-neighbour 2x by `jnp.repeat`, then a SAME
    `lax.conv_general_dilated` (the form `upsample_conv2d` replaces)."""
    return _reference_conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), w, 1, "SAME")


@pytest.mark.parametrize("k,x_shape", [(1, (2, 5, 6, 3)), (3, (2, 7, 7, 3)), (3, (1, 4, 9, 2)), (5, (2, 7, 7, 3)),
                                       (5, (1, 6, 5, 2)), (7, (1, 5, 5, 2))])
def test_upsample_conv2d_equals_upsampling_then_convolving(k, x_shape):
    """Reference: repeat + lax.conv_general_dilated, values and both gradients (float32 rounding:
    the sub-pixel form sums the kernel taps before multiplying)."""
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, x_shape[-1], 4)), jnp.float32)
    out = nn.upsample_conv2d(x, w)
    assert out.shape == (x_shape[0], 2 * x_shape[1], 2 * x_shape[2], 4)
    np.testing.assert_allclose(out, _upsample_then_conv(x, w), rtol=1e-5, atol=2e-5)
    mine = lambda x, w: jnp.sum(jnp.sin(nn.upsample_conv2d(x, w)))
    ref = lambda x, w: jnp.sum(jnp.sin(_upsample_then_conv(x, w)))
    for a, b in zip(jax.grad(mine, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4)


def test_upsample_conv2d_check_grads_and_rejects_bad_kernels():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(1, 3, 3, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 2)), jnp.float32) * 0.3
    check_grads(nn.upsample_conv2d, (x, w), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="odd size"):
        nn.upsample_conv2d(x, jnp.zeros((4, 4, 2, 1)))
    with pytest.raises(ValueError, match="2 channels but the kernel expects 3"):
        nn.upsample_conv2d(x, jnp.zeros((3, 3, 3, 1)))
    with pytest.raises(ValueError, match=r"x \[B, H, W, C\]"):
        nn.upsample_conv2d(x[0], w)


def test_upsample_conv_layer_is_the_conv_it_replaces():
    """Same parameter tree and initial values as `Conv` (a checkpoint of upsample + Conv loads),
    the same output as upsampling then that Conv."""
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 7, 7, 3)), jnp.float32)
    up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    mine, plain = nn.UpsampleConv(6, (5, 5)), nn.Conv(6, (5, 5))
    p_mine, p_plain = mine.init(jax.random.key(1), x), plain.init(jax.random.key(1), up)
    assert jax.tree.map(jnp.shape, p_mine) == jax.tree.map(jnp.shape, p_plain)
    for a, b in zip(jax.tree.leaves(p_mine), jax.tree.leaves(p_plain)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(mine.apply(p_mine, x), plain.apply(p_plain, up), rtol=1e-5, atol=1e-5)


def test_classifier_shapes_and_features():
    model = nn.MnistClassifier(features_dim=16)
    x = jnp.zeros((5, 28, 28, 1))
    params = _params(model, x)["params"]
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


# ------------------------------------------------------------------------------ every AD mode, every layer
# On this CPU host the layers take the CPU paths of genjax._backend (conv2d's primitive, the stable
# softplus, the kernel-major minibatch layer). The reference is the same math on the plain path
# (`_backend.disabled("all")`: lax.conv_general_dilated with XLA's autodiff, jax.nn.softplus,
# jnp.abs), and, for the convolution itself, lax.conv_general_dilated and flax.linen.Conv.


ALL_MODES = ("jvp", "linearize", "jacfwd", "grad", "hvp", "grad_of_jvp")
# Whole networks: forward mode (what failed on CPU before). The layers they are made of (conv2d,
# Conv, softplus, the GAN layers' |x|) are checked in every mode, second order included, on their
# own, and reverse mode of every network is what the training tests run; the other modes of whole
# networks added ~8 minutes of compiles to the suite (measured) but no new primitive.
NETWORK_MODES = ("jvp",)


def _every_mode(f, args, directions=2, modes=ALL_MODES):
    """jvp, linearize, jacfwd (along `directions` random directions of all the arguments at once:
    a vmapped JVP with batched inputs and kernels), reverse mode, forward-over-reverse (HVP) and
    reverse-over-forward, in one program jitted afresh (so traced on the current path); `modes`
    chooses which."""
    tangents = _random_like(args, 1)
    dirs = [_random_like(args, 10 + k) for k in range(directions)]
    argnums = tuple(range(len(args)))
    sin_sum = lambda tree: sum(jnp.sum(jnp.sin(v)) for v in jax.tree.leaves(tree))  # noqa: E731
    scalar = lambda *a: sin_sum(f(*a))  # noqa: E731
    along = lambda c: f(*jax.tree.map(lambda a, *d: a + sum(ci * di for ci, di in zip(c, d)), args, *dirs))  # noqa: E731

    programs = {
        "jvp": lambda args, tangents: jax.jvp(f, args, tangents),
        "linearize": lambda args, tangents: jax.linearize(f, *args)[1](*tangents),
        "jacfwd": lambda args, tangents: jax.jacfwd(along)(jnp.zeros(directions)),
        "grad": lambda args, tangents: jax.grad(scalar, argnums)(*args),
        "hvp": lambda args, tangents: jax.jvp(jax.grad(scalar, argnums), args, tangents)[1],
        "grad_of_jvp": lambda args, tangents: jax.grad(
            lambda *a: sin_sum(jax.jvp(f, a, tangents)[1]), argnums)(*args),
    }

    @jax.jit
    def run(args, tangents):
        return {mode: programs[mode](args, tangents) for mode in modes}

    return run(args, tangents)


def assert_every_ad_mode_matches_plain(f, args, rtol=2e-4, atol=2e-4, modes=NETWORK_MODES):
    """f(*args) -> arrays, differentiated in `modes` on the CPU path and on the plain path;
    tolerances relative to each result's largest magnitude (float32 rounding over a network)."""
    mine = _every_mode(f, args, modes=modes)
    with _backend.disabled("all"):
        plain = _every_mode(f, args, modes=modes)
    for mode in mine:
        a_leaves, b_leaves = jax.tree.leaves(mine[mode]), jax.tree.leaves(plain[mode])
        assert len(a_leaves) == len(b_leaves) > 0, mode
        for a, b in zip(a_leaves, b_leaves):
            scale = float(jnp.max(jnp.abs(b))) if b.size else 0.0
            assert np.all(np.isfinite(a)), mode
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(scale, 1.0), err_msg=mode)
    if "linearize" in mine:
        for a, b in zip(jax.tree.leaves(mine["linearize"]), jax.tree.leaves(mine["jvp"][1]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(b))), 1.0))


@pytest.mark.parametrize("strides,padding,x_shape,k", CASES)
def test_conv2d_forward_mode_matches_xla_convolution(strides, padding, x_shape, k):
    """Reference: jax.jvp / jacfwd / linearize / HVPs of lax.conv_general_dilated (this failed
    with "can't apply forward-mode autodiff (jvp) to a custom_vjp function" on CPU before)."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*k, x_shape[-1], 5)), jnp.float32) * 0.3
    mine = _every_mode(lambda x, w: nn.conv2d(x, w, strides, padding), (x, w))
    ref = _every_mode(lambda x, w: _reference_conv(x, w, strides, padding), (x, w))
    for mode in mine:
        for a, b in zip(jax.tree.leaves(mine[mode]), jax.tree.leaves(ref[mode])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=mode)
    check_grads(lambda x, w: nn.conv2d(x, w, strides, padding), (x, w), order=2, modes=["fwd", "rev"],
                atol=5e-2, rtol=5e-2)


def test_conv_layer_matches_flax_conv_in_every_mode():
    """Reference: flax.linen.Conv with the same parameters (reverse-mode gradients to float32
    rounding, and forward mode)."""
    import flax.linen as fnn

    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 7, 7, 3)), jnp.float32)
    mine, theirs = nn.Conv(4, (3, 3), strides=2), fnn.Conv(4, (3, 3), strides=2)
    params = _params(mine, x)
    a = _every_mode(mine.apply, (params, x))
    b = _every_mode(theirs.apply, (params, x))
    for mode in a:
        for u, v in zip(jax.tree.leaves(a[mode]), jax.tree.leaves(b[mode])):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5, err_msg=mode)


def test_classifier_every_ad_mode():
    x = jnp.asarray(np.random.default_rng(7).uniform(size=(2, 12, 12, 1)), jnp.float32)
    model = nn.MnistClassifier(features_dim=8)
    assert_every_ad_mode_matches_plain(model.apply, (_params(model, x), x))


def test_vae_modules_every_ad_mode():
    x = jnp.asarray(np.random.default_rng(8).uniform(size=(2, 8, 8, 1)), jnp.float32)
    key = jax.random.key(3)
    for model in (nn.VaeConv(channels=(4, 4), hidden_dim=8, latent_dim=3, image_shape=(8, 8, 1)),
                  nn.VaeMlp(hidden_dims=(8,), latent_dim=3, image_shape=(8, 8, 1))):
        assert_every_ad_mode_matches_plain(lambda p, x: model.apply(p, x, key), (_params(model, x, key), x))


def test_vqvae_modules_every_ad_mode():
    x = jnp.asarray(np.random.default_rng(9).uniform(size=(2, 8, 8, 1)), jnp.float32)
    enc = nn.VQVAEEncoder(latent_dim=3, channels=(4, 4), res_hidden=4)
    z = enc.apply(_params(enc, x), x)
    dec = nn.VQVAEDecoder(out_channels=1, channels=(4, 4), res_hidden=4)
    assert_every_ad_mode_matches_plain(enc.apply, (_params(enc, x), x))
    assert_every_ad_mode_matches_plain(dec.apply, (_params(dec, z), z))


def test_diffusion_modules_every_ad_mode():
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 1)), jnp.float32)
    t = jnp.asarray([3.0, 40.0], jnp.float32)
    unet = nn.UNet(channels=(4, 4), num_res_blocks=0, time_dim=4, groups=2)  # every kind of block, once
    # random parameters: the output convolution is not the zero of a real init, so that the
    # output depends on the rest of the network
    assert_every_ad_mode_matches_plain(lambda p, x: unet.apply(p, x, t), (_params(unet, x, t), x))
    x2 = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    mlp = nn.MlpDenoiser(hidden=8, num_layers=2, time_dim=4)
    assert_every_ad_mode_matches_plain(lambda p, x: mlp.apply(p, x, t[:1].repeat(3)), (_params(mlp, x2, t[:1].repeat(3)), x2))
    emb = nn.TimeEmbedding(dim=4)
    assert_every_ad_mode_matches_plain(emb.apply, (_params(emb, t), t))


def test_dense_autoencoder_every_ad_mode():
    x = jnp.asarray(np.random.default_rng(11).uniform(size=(3, 6)), jnp.float32)
    model = nn.DenseAutoencoder(features=6, hidden=4)
    assert_every_ad_mode_matches_plain(model.apply, (_params(model, x), x))


def test_contractive_penalty_with_a_conv_encoder_on_cpu():
    """Reference: for a linear VALID convolution f(x) = conv(x, w), J_f is the same for every
    example and ||J_f||_F^2 = P Q ||w||_F^2 (each of the P x Q output positions sees the whole
    kernel); a nonlinear conv encoder's penalty and its gradient agree with the plain path."""
    from genjax import autoencoders

    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(3, 6, 5, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 2, 2, 4)), jnp.float32)
    linear = lambda v: nn.conv2d(v[None], w, 1, "VALID")[0]  # noqa: E731, [4, 4, 4]: jacfwd (64 >= 60)
    expected = 4 * 4 * float(np.sum(np.asarray(w, np.float64) ** 2))
    np.testing.assert_allclose(float(autoencoders.contractive_penalty(linear, x)), expected, rtol=1e-5)

    def penalty(w, x):  # a [6, 5, 4] code of a [6, 5, 2] example: the Jacobian is taken forward
        return autoencoders.contractive_penalty(lambda v: jnp.tanh(nn.conv2d(v[None], w, 1, "SAME")[0]), x)

    value, grad = jax.jit(jax.value_and_grad(penalty))(w, x)
    with _backend.disabled("conv_grad"):
        value0, grad0 = jax.jit(jax.value_and_grad(penalty))(w, x)
    np.testing.assert_allclose(value, value0, rtol=1e-5)
    np.testing.assert_allclose(grad, grad0, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(grad0))))


def test_conv2d_forward_mode_and_input_gradient_under_shard_map():
    """A varying batch and an invariant kernel under shard_map (one CPU device): the CPU
    primitive aligns its operands' manual axes as lax.conv_general_dilated does. Reference: the
    same function outside shard_map."""
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.make_mesh((1,), ("d",))
    rng = np.random.default_rng(13)
    x = jax.device_put(jnp.asarray(rng.normal(size=(2, 5, 5, 2)), jnp.float32), NamedSharding(mesh, PartitionSpec("d")))
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32)

    def body(x, w):
        return (jax.grad(lambda x: jnp.sum(nn.conv2d(x, w) ** 2))(x),
                jax.jvp(lambda x: nn.conv2d(x, w), (x,), (x,))[1])

    sharded = jax.shard_map(body, mesh=mesh, in_specs=(PartitionSpec("d"), PartitionSpec()),
                            out_specs=(PartitionSpec("d"), PartitionSpec("d")))
    for a, b in zip(jax.jit(sharded)(x, w), body(x, w), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
