"""The GAN layers and networks of genjax.nn (minibatch discrimination, virtual batch norm, the 2-D
MLPs and the 28x28 DCGAN). References are the layers' formulas (Salimans et al. 2016, sections
3.2 and 3.4) written out in float64 NumPy in the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import _gan as gnn


def _init_apply(module, *args, **kwargs):
    params = module.init(jax.random.key(0), *args, **kwargs)["params"]
    return params, module.apply({"params": params}, *args, **kwargs)


# ------------------------------------------------------------------------------ minibatch discrimination


def test_minibatch_discrimination_matches_its_formula():
    """o(x_i)_k = sum_j exp(-||M_ik - M_jk||_1), M_i = x_i T, output [x, o]."""
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    layer = gnn.MinibatchDiscrimination(num_kernels=4, kernel_dim=2)
    params, out = _init_apply(layer, jnp.asarray(x))
    t = np.asarray(params["kernel"], np.float64)  # [A, K * C]
    m = (x.astype(np.float64) @ t).reshape(5, 4, 2)
    o = np.exp(-np.abs(m[:, None] - m[None, :]).sum(-1)).sum(1)  # [B, K]
    assert out.shape == (5, 3 + 4)
    np.testing.assert_allclose(out[:, :3], x)
    np.testing.assert_allclose(out[:, 3:], o, rtol=1e-5)


def test_minibatch_discrimination_sees_a_collapsed_batch():
    """Identical examples: every distance is 0, so o = B for each kernel (the maximum)."""
    layer = gnn.MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
    _, out = _init_apply(layer, jnp.ones((6, 4)))
    np.testing.assert_allclose(out[:, 4:], 6.0)


def test_minibatch_discrimination_is_permutation_equivariant_and_differentiable():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)
    layer = gnn.MinibatchDiscrimination(num_kernels=2, kernel_dim=3)
    params, out = _init_apply(layer, x)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_allclose(layer.apply({"params": params}, x[perm]), out[perm], rtol=1e-5)
    g = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x)))(params)
    assert np.all(np.isfinite(g["kernel"]))
    with pytest.raises(ValueError, match=r"\[B, A\]"):
        layer.apply({"params": params}, jnp.ones((2, 3, 1)))


def test_minibatch_discrimination_gradient_matches_the_plain_abs():
    """The layer's comparison-free |x| derivative gives the gradient that jnp.abs gives."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(7, 5)), jnp.float32)
    layer = gnn.MinibatchDiscrimination(num_kernels=3, kernel_dim=2)
    params = layer.init(jax.random.key(0), x)["params"]
    w = jnp.asarray(np.random.default_rng(4).normal(size=(7, 5 + 3)), jnp.float32)

    def reference(t):  # the formula with jnp.abs
        m = (x @ t).reshape(7, 3, 2)
        o = jnp.sum(jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None, :]), -1)), 1)
        return jnp.sum(w * jnp.concatenate([x, o], -1))

    g = jax.grad(lambda t: jnp.sum(w * layer.apply({"params": {"kernel": t}}, x)))(params["kernel"])
    np.testing.assert_allclose(g, jax.grad(reference)(params["kernel"]), rtol=1e-4, atol=1e-5)
    assert float(jax.grad(lambda v: gnn._abs(v))(0.0)) == 0.0  # sign(0) = 0, as jnp.abs
    assert float(jax.grad(lambda v: gnn._abs(v))(-2.5)) == -1.0


def test_minibatch_discrimination_second_derivatives_match_the_plain_abs():
    """Gradient penalties differentiate the discriminator twice (d/dtheta of ||d/dx D||^2). The
    pairwise differences include i = j (exactly 0), where a naive x / max(|x|, tiny) derivative
    would be 1 / tiny: the R1 penalty's parameter gradient must be finite and equal the one
    through jnp.abs (whose sign has derivative 0)."""
    from genjax import gan

    x = jnp.asarray(np.random.default_rng(5).normal(size=(6, 4)), jnp.float32)
    layer = gnn.MinibatchDiscrimination(num_kernels=2, kernel_dim=3)
    t0 = layer.init(jax.random.key(0), x)["params"]["kernel"]
    w = jnp.asarray(np.random.default_rng(6).normal(size=(4 + 2,)), jnp.float32)

    def reference_layer(t, b):
        m = (b @ t).reshape(b.shape[0], 2, 3)
        o = jnp.sum(jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None, :]), -1)), 1)
        return jnp.concatenate([b, o], -1) @ w

    def r1(t, critic):
        return gan.r1_penalty(lambda b: critic(t, b), x)

    ours = jax.grad(r1)(t0, lambda t, b: layer.apply({"params": {"kernel": t}}, b) @ w)
    ref = jax.grad(r1)(t0, reference_layer)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ virtual batch norm


def test_virtual_batch_norm_matches_its_formula():
    """mu = (R mean_ref + x) / (R + 1), var = (R E_ref[h^2] + x^2) / (R + 1) - mu^2, per feature."""
    rng = np.random.default_rng(2)
    ref = rng.normal(1.0, 2.0, size=(8, 3))
    x = rng.normal(size=(4, 3))
    layer = gnn.VirtualBatchNorm()
    _, out = _init_apply(layer, jnp.asarray(np.concatenate([ref, x]), jnp.float32), 8)
    mu = (8 * ref.mean(0) + x) / 9
    var = (8 * (ref**2).mean(0) + x**2) / 9 - mu**2
    np.testing.assert_allclose(out[8:], (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    # the reference rows use the reference statistics only: zero mean, unit variance per feature
    np.testing.assert_allclose(np.mean(out[:8], 0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(out[:8], 0), 1.0, rtol=1e-3)


def test_virtual_batch_norm_output_of_an_example_does_not_depend_on_the_other_examples():
    rng = np.random.default_rng(3)
    ref = jnp.asarray(rng.normal(size=(4, 5, 5, 2)), jnp.float32)  # spatial features: stats over B, H, W
    a = jnp.asarray(rng.normal(size=(3, 5, 5, 2)), jnp.float32)
    b = a.at[1:].set(100.0 * jnp.asarray(rng.normal(size=(2, 5, 5, 2)), jnp.float32))
    layer = gnn.VirtualBatchNorm()
    params = layer.init(jax.random.key(0), jnp.concatenate([ref, a]), 4)["params"]
    out_a = layer.apply({"params": params}, jnp.concatenate([ref, a]), 4)
    out_b = layer.apply({"params": params}, jnp.concatenate([ref, b]), 4)
    np.testing.assert_allclose(out_a[4], out_b[4], rtol=1e-5)  # example 0 unchanged
    np.testing.assert_allclose(out_a[:4], out_b[:4], rtol=1e-5)  # the reference rows too


def test_virtual_batch_norm_validates_num_reference():
    layer = gnn.VirtualBatchNorm()
    with pytest.raises(ValueError, match="num_reference"):
        layer.init(jax.random.key(0), jnp.ones((4, 2)), 0)
    with pytest.raises(TypeError, match="static int"):
        layer.init(jax.random.key(0), jnp.ones((4, 2)), 2.0)


# ------------------------------------------------------------------------------ networks


def test_mlp_generator_and_discriminator_shapes():
    g = gnn.MlpGenerator(hidden=16, depth=2)
    _, x = _init_apply(g, jnp.ones((7, 3)))
    assert x.shape == (7, 2)
    d = gnn.MlpDiscriminator(hidden=16, depth=2, minibatch_kernels=4)
    params, (logits, feats) = _init_apply(d, x, with_features=True)
    assert logits.shape == (7,) and feats.shape == (7, 16)
    assert d.apply({"params": params}, x).shape == (7,)


def test_generators_with_virtual_batch_norm_need_and_use_the_reference_batch():
    g = gnn.MlpGenerator(hidden=8, depth=2, norm="virtual_batch")
    ref = jax.random.normal(jax.random.key(1), (16, 2))
    z = jax.random.normal(jax.random.key(2), (5, 2))
    params, x = _init_apply(g, z, ref)
    assert x.shape == (5, 2)
    # per-example outputs: the first sample is the same in a batch of one
    np.testing.assert_allclose(g.apply({"params": params}, z[:1], ref)[0], x[0], rtol=1e-5)
    with pytest.raises(ValueError, match="reference"):
        g.apply({"params": params}, z)


@pytest.mark.parametrize("norm", ["none", "batch", "virtual_batch"])
def test_dcgan_shapes_and_range(norm):
    from tests.test_nn import _params  # from NumPy: a JAX init of the 4-D kernels compiles for seconds

    g = gnn.DcganGenerator(width=4, norm=norm)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((3, 8)), jnp.float32)
    ref = jnp.asarray(rng.standard_normal((4, 8)), jnp.float32) if norm == "virtual_batch" else None
    images = g.apply(_params(g, z, ref), z, ref)
    assert images.shape == (3, 28, 28, 1)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    d = gnn.DcganDiscriminator(width=4, feature_dim=16, minibatch_kernels=2)
    logits, feats = d.apply(_params(d, images, with_features=True), images, with_features=True)
    assert logits.shape == (3,) and feats.shape == (3, 16)


# ------------------------------------------------------------------------------ every AD mode
# jvp, linearize, jacfwd, grad, HVPs of every GAN layer on this CPU host (the kernel-major,
# comparison-free minibatch layer; conv2d's CPU primitive) against the plain path
# (genjax._backend.disabled("all"): the [B, B, K, C] reduction with jnp.abs, lax.conv_general_dilated).


def test_gan_layers_every_ad_mode():
    from tests.test_nn import ALL_MODES, _params, assert_every_ad_mode_matches_plain

    rng = np.random.default_rng(20)
    x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    mb = gnn.MinibatchDiscrimination(num_kernels=2, kernel_dim=3)
    assert_every_ad_mode_matches_plain(mb.apply, (_params(mb, x), x), modes=ALL_MODES)
    h = jnp.asarray(rng.normal(size=(6, 2, 2, 3)), jnp.float32)
    vbn = gnn.VirtualBatchNorm()
    assert_every_ad_mode_matches_plain(lambda p, h: vbn.apply(p, h, 2), (_params(vbn, h, 2), h))


@pytest.mark.parametrize("norm", ["batch", "virtual_batch"])
def test_mlp_gan_every_ad_mode(norm):
    from tests.test_nn import _params, assert_every_ad_mode_matches_plain

    rng = np.random.default_rng(21)
    z, ref = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32), jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    g = gnn.MlpGenerator(hidden=8, depth=2, norm=norm)
    assert_every_ad_mode_matches_plain(lambda p, z: g.apply(p, z, ref), (_params(g, z, ref), z))
    d = gnn.MlpDiscriminator(hidden=8, depth=2, minibatch_kernels=3, minibatch_dim=2)
    assert_every_ad_mode_matches_plain(lambda p, x: d.apply(p, x, with_features=True),
                                       (_params(d, z), z))


def test_dcgan_every_ad_mode():
    from tests.test_nn import _params, assert_every_ad_mode_matches_plain

    rng = np.random.default_rng(22)
    z, ref = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32), jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    g = gnn.DcganGenerator(width=2, norm="virtual_batch")
    assert_every_ad_mode_matches_plain(lambda p, z: g.apply(p, z, ref), (_params(g, z, ref), z))
    x = jnp.asarray(rng.uniform(size=(2, 28, 28, 1)), jnp.float32)
    d = gnn.DcganDiscriminator(width=2, feature_dim=4, minibatch_kernels=2, minibatch_dim=2)
    assert_every_ad_mode_matches_plain(d.apply, (_params(d, x), x))
