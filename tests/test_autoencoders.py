"""Tests for genjax.autoencoders and genjax.nn's DenseAutoencoder.

Reference values come from closed forms written out in the tests (the Bernoulli cross-entropy
and KL, Rifai et al.'s sigmoid Jacobian norm, ||W||_F^2 for a linear map), from brute force
(`jax.jacobian` of one example at a time, NumPy sorting), or from exact sampling statistics (the
binomial and normal distributions of the corruption noise, with scipy.stats). Everything runs in
float32 unless a test says otherwise.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special, stats

from genjax import autoencoders as ae
from genjax import divergences as dv
from genjax.nn._autoencoders import DenseAutoencoder


def _uniform(seed: int, shape, low=0.0, high=1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def _normal(seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------
# reconstruction_loss
# ------------------------------------------------------------------------------------------


def test_reconstruction_losses_match_closed_forms():
    x, y, logits = _uniform(0, (4, 9)), _uniform(1, (4, 9)), 3 * _normal(2, (4, 9))
    x64, l64 = x.astype(np.float64), logits.astype(np.float64)
    # squared error: sum_i (x_i - y_i)^2, and its mean over the event axis
    want = np.sum((x64 - y) ** 2, axis=-1)
    np.testing.assert_allclose(ae.reconstruction_loss(x, y, "mse"), want, rtol=1e-6)
    np.testing.assert_allclose(ae.reconstruction_loss(x, y, "mse", reduction="mean"), want / 9, rtol=1e-6)
    # Bernoulli cross-entropy: -sum_i [x_i log s(l_i) + (1 - x_i) log s(-l_i)] (scipy.special.log_expit)
    want = -np.sum(x64 * special.log_expit(l64) + (1 - x64) * special.log_expit(-l64), axis=-1)
    np.testing.assert_allclose(ae.reconstruction_loss(x, logits, "bernoulli"), want, rtol=1e-5)


def test_reconstruction_loss_axes_and_shapes():
    x, y = _uniform(3, (2, 5, 5, 1)), _uniform(4, (2, 5, 5, 1))
    per_image = ae.reconstruction_loss(x, y, "mse", axis=(1, 2, 3))
    assert per_image.shape == (2,)
    np.testing.assert_allclose(per_image, ae.reconstruction_loss(x.reshape(2, -1), y.reshape(2, -1), "mse"),
                               rtol=1e-6)
    assert ae.reconstruction_loss(x, y, "mse", axis=None).shape == ()
    assert ae.reconstruction_loss(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), "mse").shape == (0,)
    with pytest.raises(ValueError, match=r"x.shape=\(2, 3\) and output.shape=\(3,\)"):
        ae.reconstruction_loss(np.zeros((2, 3), np.float32), np.zeros(3, np.float32), "mse")
    with pytest.raises(ValueError, match="`likelihood` must be one of"):
        ae.reconstruction_loss(x, y, "l1")
    with pytest.raises(TypeError, match="kind"):  # the keyword is `likelihood`, as in genjax.vae
        ae.reconstruction_loss(x, y, kind="mse")
    with pytest.raises(ValueError, match="reduction"):
        ae.reconstruction_loss(x, y, "mse", reduction="none")
    # The integer policy of genjax._checks: integer arrays are promoted to the default float
    # (values unchanged: 0..255 images must still be scaled by the caller).
    ints = np.arange(6, dtype=np.uint8).reshape(2, 3)
    promoted = ae.reconstruction_loss(ints, np.zeros((2, 3), np.float32), "mse")
    assert promoted.dtype == jnp.float32
    np.testing.assert_array_equal(promoted, [0 + 1 + 4, 9 + 16 + 25])
    with pytest.raises(TypeError, match="`x` must have a real"):
        ae.reconstruction_loss(np.zeros((2, 3), np.complex64), np.zeros((2, 3), np.float32), "mse")


def test_bernoulli_reconstruction_is_finite_at_extreme_logits():
    x = jnp.array([[0.0, 1.0, 0.3, 1.0]])
    logits = jnp.array([[1e4, -1e4, 1e4, 1e4]])
    # softplus(l) - x l: 1e4, 1e4, 0.7e4 and 0 (closed form), 2.7e4 in all
    np.testing.assert_allclose(ae.reconstruction_loss(x, logits, "bernoulli"), [2.7e4], rtol=1e-6)
    grad = jax.grad(lambda l: jnp.sum(ae.reconstruction_loss(x, l, "bernoulli")))(logits)
    # d/dl = sigmoid(l) - x
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.7, 0.0]], atol=1e-6)


def test_reconstruction_loss_gradients():
    x, y = _uniform(5, (2, 3)), _normal(6, (2, 3))
    for kind in ("mse", "bernoulli"):
        check_grads(lambda out, kind=kind: ae.reconstruction_loss(x, out, kind), (y,), order=2,
                    modes=("rev",), atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------
# corrupt
# ------------------------------------------------------------------------------------------

_ROWS, _DIM = 2000, 50


@pytest.mark.parametrize("traced_level", [False, True])  # top-k selection / random permutation
@pytest.mark.parametrize("kind", ["masking", "salt_and_pepper"])
def test_fraction_corruptions_hit_exactly_level_d_entries_uniformly(kind, traced_level):
    x = _uniform(7, (_ROWS, _DIM), 0.1, 0.9)  # no clean entry equals 0 or 1
    level = 0.3
    if traced_level:
        out = np.asarray(jax.jit(lambda lv: ae.corrupt(jax.random.key(0), x, kind, lv))(level))
    else:
        out = np.asarray(ae.corrupt(jax.random.key(0), x, kind, level))
    changed = out != x
    # Vincent et al.: a fixed number round(level * d) = 15 of each example's entries.
    assert (changed.sum(axis=1) == 15).all()
    np.testing.assert_array_equal(out[~changed], x[~changed])  # the others are untouched
    # Each position is chosen with probability 0.3 independently across rows: its count over
    # the 2000 rows is Binomial(2000, 0.3) (sd 20.5); all 50 counts lie within 5 sd.
    counts = changed.sum(axis=0)
    assert np.all(np.abs(counts - _ROWS * level) < 5 * math.sqrt(_ROWS * level * (1 - level)))
    if kind == "masking":
        assert (out[changed] == 0).all()
    else:
        values = out[changed]
        assert set(np.unique(values)) == {0.0, 1.0}
        # fair coin: the number of 1s among the 30,000 corrupted entries is Binomial(30000, 1/2)
        ones, n = int((values == 1).sum()), values.size
        assert abs(ones - n / 2) < 5 * math.sqrt(n / 4)


def test_gaussian_corruption_is_additive_isotropic_noise():
    x = _uniform(8, (_ROWS, _DIM))
    sigma = 0.3
    noise = (np.asarray(ae.corrupt(jax.random.key(1), x, "gaussian", sigma)) - x).ravel() / sigma
    n = noise.size  # 100,000 draws of N(0, 1)
    assert abs(noise.mean()) < 5 / math.sqrt(n)  # the sample mean has sd 1/sqrt(n)
    assert abs(noise.var() - 1) < 5 * math.sqrt(2 / n)  # the sample variance has sd sqrt(2/n)
    assert stats.kstest(noise, "norm").pvalue > 1e-4  # scipy.stats: consistent with N(0, 1)


def test_corrupt_keys_examples_and_axes():
    x = _uniform(9, (4, 6, 6, 1), 0.1, 0.9)
    a = ae.corrupt(jax.random.key(2), x, "masking", 0.25, axis=(1, 2, 3))
    b = ae.corrupt(jax.random.key(2), x, "masking", 0.25, axis=(1, 2, 3))
    c = ae.corrupt(jax.random.key(3), x, "masking", 0.25, axis=(1, 2, 3))
    np.testing.assert_array_equal(a, b)  # a pure function of (key, x)
    assert (np.asarray(a) != np.asarray(c)).any()
    masks = np.asarray(a) == 0
    assert (masks.reshape(4, -1).sum(axis=1) == 9).all()  # round(0.25 * 36) per image
    assert len({m.tobytes() for m in masks}) == 4  # each image has its own mask
    # raw uint32[2] keys are accepted too; levels 0 and 1
    assert (np.asarray(ae.corrupt(jax.random.PRNGKey(0), x, "gaussian", 0.1)) != x).all()
    np.testing.assert_array_equal(ae.corrupt(jax.random.PRNGKey(0), x, "gaussian", 0.0), x)
    np.testing.assert_array_equal(ae.corrupt(jax.random.key(4), x, "masking", 0.0), x)
    assert (np.asarray(ae.corrupt(jax.random.key(4), x, "masking", 1.0)) == 0).all()
    # an empty batch
    assert ae.corrupt(jax.random.key(4), np.zeros((0, 5), np.float32), "salt_and_pepper", 0.5).shape == (0, 5)


def test_corrupt_level_may_be_traced():
    x = jnp.full((3, 20), 0.5)
    levels = jnp.array([0.1, 0.5, 0.95])
    out = jax.jit(jax.vmap(lambda lv: ae.corrupt(jax.random.key(5), x, "masking", lv)))(levels)
    assert (np.asarray(out == 0).sum(axis=-1) == np.array([[2], [10], [19]])).all()


def test_corrupt_validates_its_arguments():
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="kind"):
        ae.corrupt(jax.random.key(0), x, "dropout", 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\], got 1.5"):
        ae.corrupt(jax.random.key(0), x, "masking", 1.5)
    with pytest.raises(ValueError, match="std"):
        ae.corrupt(jax.random.key(0), x, "gaussian", -0.1)
    with pytest.raises(ValueError, match="scalar"):
        ae.corrupt(jax.random.key(0), x, "gaussian", jnp.ones(2))
    ints = ae.corrupt(jax.random.key(0), jnp.ones((2, 10), jnp.int32), "masking", 0.3)  # promoted
    assert ints.dtype == jnp.float32 and (np.asarray(ints == 0).sum(-1) == 3).all()
    with pytest.raises(TypeError, match="`x` must have a real"):
        ae.corrupt(jax.random.key(0), jnp.zeros((2, 3), jnp.complex64), "masking", 0.1)
    with pytest.raises(ValueError, match="value_range"):
        ae.corrupt(jax.random.key(0), x, "salt_and_pepper", 0.1, value_range=(0.0,))


def test_corrupt_does_not_recompile():
    x = jnp.zeros((3, 7))
    ae.corrupt(jax.random.key(0), x, "masking", 0.2)
    size = ae._corrupt_kernel._cache_size()
    ae.corrupt(jax.random.key(1), x + 1, "masking", 0.2)  # new key and data: the same program
    assert ae._corrupt_kernel._cache_size() == size
    traces = []

    @jax.jit
    def noisy(key, x, level):  # a traced level: one program for every level
        traces.append(None)
        return ae.corrupt(key, x, "salt_and_pepper", level)

    for level in (0.1, 0.2, 0.3):
        noisy(jax.random.key(0), x, level)
    assert len(traces) == 1


# ------------------------------------------------------------------------------------------
# sparsity_penalty
# ------------------------------------------------------------------------------------------


def _bernoulli_kl_np(rho, q):
    """KL(Bernoulli(rho) || Bernoulli(q)), the closed form in float64."""
    return rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))


def test_sparsity_penalty_is_the_sum_of_bernoulli_kls():
    h = _uniform(10, (16, 12), 0.0, 0.4)
    rho_hat = h.astype(np.float64).mean(axis=0)
    want = np.sum(_bernoulli_kl_np(0.05, rho_hat))
    np.testing.assert_allclose(ae.sparsity_penalty(h, 0.05), want, rtol=1e-5)
    np.testing.assert_allclose(ae.sparsity_penalty(h, 0.05), jnp.sum(dv.bernoulli_kl(0.05, h.mean(0))), rtol=1e-6)
    # per-unit targets, units spread over several axes
    rho = np.linspace(0.02, 0.3, 12).astype(np.float32)
    np.testing.assert_allclose(ae.sparsity_penalty(h.reshape(16, 3, 4), rho.reshape(3, 4)),
                               np.sum(_bernoulli_kl_np(rho, rho_hat)), rtol=1e-5)


def test_sparsity_penalty_is_zero_with_zero_gradient_at_the_target():
    # 20 examples, unit j active (1) in exactly one of them: rho_hat_j = 1/20 = 0.05 for all j.
    h = np.zeros((20, 8), np.float32)
    h[np.arange(8) * 2, np.arange(8)] = 1.0
    assert abs(float(ae.sparsity_penalty(h, 0.05))) < 1e-6
    grad = jax.grad(lambda a: ae.sparsity_penalty(a, 0.05))(jnp.asarray(h))
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)
    logits = jnp.full((4, 3), math.log(0.05 / 0.95))  # sigmoid = 0.05
    assert abs(float(ae.sparsity_penalty_from_logits(logits, 0.05))) < 1e-5


def test_sparsity_penalty_sums_over_layers():
    h1, h2 = _uniform(11, (8, 5), 0.0, 0.5), _uniform(12, (4, 7), 0.0, 0.5)  # batch sizes may differ
    np.testing.assert_allclose(ae.sparsity_penalty([h1, h2], 0.1),
                               ae.sparsity_penalty(h1, 0.1) + ae.sparsity_penalty(h2, 0.1), rtol=1e-6)


def test_sparsity_penalty_from_logits_agrees_and_stays_finite():
    logits = 4 * _normal(13, (32, 10))
    np.testing.assert_allclose(ae.sparsity_penalty_from_logits(logits, 0.05),
                               ae.sparsity_penalty(jax.nn.sigmoid(logits), 0.05), rtol=1e-5)
    np.testing.assert_allclose(ae.sparsity_penalty_from_logits([logits, logits[:5]], 0.2),
                               ae.sparsity_penalty([jax.nn.sigmoid(logits), jax.nn.sigmoid(logits[:5])], 0.2),
                               rtol=1e-5)
    check_grads(lambda l: ae.sparsity_penalty_from_logits(l, 0.05), (logits[:4, :3],), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2)
    # Saturated units: the probability version is +inf (rho_hat is exactly 0 or 1 in float32);
    # from logits, KL(0.05 || s(1e4)) = -0.05 log 1 - 0.95 log s(-1e4) = 0.95e4 + 0.05 log 0.05
    # + 0.95 log 0.95 (closed form), and the gradient is finite.
    saturated = jnp.array([[1e4, -1e4], [1e4, -1e4]])
    assert np.isinf(float(ae.sparsity_penalty(jax.nn.sigmoid(saturated), 0.05)))
    value = float(ae.sparsity_penalty_from_logits(saturated[:, :1], 0.05))
    np.testing.assert_allclose(value, 0.95e4 + 0.05 * math.log(0.05) + 0.95 * math.log(0.95), rtol=1e-6)
    grad = jax.grad(lambda l: ae.sparsity_penalty_from_logits(l, 0.05))(saturated)
    assert np.isfinite(np.asarray(grad)).all()


def test_sparsity_penalty_validates_its_arguments():
    with pytest.raises(ValueError, match=r"\[B, units...\]"):
        ae.sparsity_penalty(jnp.ones(3) / 2, 0.05)
    with pytest.raises(ValueError, match="empty batch"):
        ae.sparsity_penalty(jnp.zeros((0, 3)), 0.05)
    with pytest.raises(ValueError, match="non-empty sequence"):
        ae.sparsity_penalty([], 0.05)
    with pytest.raises(ValueError, match=r"activations\[1\]"):
        ae.sparsity_penalty([jnp.ones((2, 3)) / 2, jnp.ones(3) / 2], 0.05)
    with pytest.raises(ValueError, match="rho"):
        ae.sparsity_penalty(jnp.ones((2, 3)) / 2, jnp.ones(4) * 0.05)
    with pytest.raises(ValueError, match="rho"):
        ae.sparsity_penalty_from_logits(jnp.ones((2, 3)), jnp.ones(4) * 0.05)


# ------------------------------------------------------------------------------------------
# k_sparse
# ------------------------------------------------------------------------------------------


K_SPARSE_IMPLEMENTATIONS = {
    "static": lambda z, k: ae.k_sparse(z, k),
    "traced": jax.jit(lambda z, k: ae.k_sparse(z, k)),
    "traced_bounded": jax.jit(lambda z, k: ae.k_sparse(z, k, max_k=9)),
}


@pytest.mark.parametrize("impl", sorted(K_SPARSE_IMPLEMENTATIONS))
def test_k_sparse_keeps_exactly_the_k_largest(impl):
    z = _normal(14, (6, 40))
    k = 7
    fn = K_SPARSE_IMPLEMENTATIONS[impl]
    out = np.asarray(fn(z, k if impl == "static" else jnp.int32(k)))
    assert ((out != 0).sum(axis=1) == k).all()
    top = np.argsort(-z, axis=1)[:, :k]  # NumPy reference
    want = np.zeros_like(z)
    np.put_along_axis(want, top, np.take_along_axis(z, top, axis=1), axis=1)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("impl", sorted(K_SPARSE_IMPLEMENTATIONS))
def test_k_sparse_gradient_flows_only_through_the_kept_entries(impl):
    z = jnp.asarray(_normal(15, (3, 10)))
    w = jnp.asarray(_normal(16, (3, 10)))
    fn = functools.partial(K_SPARSE_IMPLEMENTATIONS[impl], k=3 if impl == "static" else jnp.int32(3))
    grad = jax.grad(lambda v: jnp.sum(fn(v) * w))(z)
    kept = np.asarray(fn(z)) != 0
    np.testing.assert_array_equal(np.asarray(grad)[kept], np.asarray(w)[kept])
    np.testing.assert_array_equal(np.asarray(grad)[~kept], 0.0)


def test_k_sparse_edge_cases():
    z = jnp.asarray(_normal(17, (2, 3, 5)))  # leading axes are batch axes
    np.testing.assert_array_equal(ae.k_sparse(z, 5), z)
    np.testing.assert_array_equal(ae.k_sparse(z, 0), jnp.zeros_like(z))
    assert ((np.asarray(ae.k_sparse(z, 2)) != 0).sum(-1) == 2).all()
    # ties go to the lower index, in both implementations
    tied = jnp.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    np.testing.assert_array_equal(ae.k_sparse(tied, 2), [[0.0, 3.0, 3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ae.k_sparse(tied, jnp.int32(2)), [[0.0, 3.0, 3.0, 0.0, 0.0]])
    # a traced k may vary per call without recompiling, e.g. annealed over training; with a
    # static bound max_k it is selected by one top_k (a k above the bound keeps max_k entries)
    traces = []

    def counts(k, max_k):
        traces.append(None)
        return jnp.sum(ae.k_sparse(z, k, max_k=max_k) != 0)

    for max_k in (None, 4):
        run = jax.jit(counts, static_argnums=1)
        assert [int(run(jnp.int32(k), max_k)) for k in (5, 3, 1)] == [6 * min(k, max_k or 5) for k in (5, 3, 1)]
    assert len(traces) == 2
    np.testing.assert_array_equal(ae.k_sparse(tied, jnp.int32(2), max_k=3), [[0.0, 3.0, 3.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="max_k"):
        ae.k_sparse(z, jnp.int32(2), max_k=6)
    with pytest.raises(TypeError, match="max_k"):
        ae.k_sparse(z, jnp.int32(2), max_k=jnp.int32(3))
    with pytest.raises(ValueError, match=r"\[0, 5\].*got 6"):
        ae.k_sparse(z, 6)
    with pytest.raises(TypeError, match="integer"):
        ae.k_sparse(z, 2.0)
    with pytest.raises(TypeError, match="integer"):
        ae.k_sparse(z, True)
    with pytest.raises(ValueError, match="scalar"):
        ae.k_sparse(z, jnp.array([1, 2]))


# ------------------------------------------------------------------------------------------
# contractive penalty
# ------------------------------------------------------------------------------------------


def _brute_force_norm_sq(encoder, x):
    """sum of squares of jax.jacobian(encoder)(x_b), one example at a time (brute force)."""
    jacobian = jax.jit(jax.jacobian(encoder))
    return np.array([np.sum(np.asarray(jacobian(xb), np.float64) ** 2) for xb in x])


@pytest.mark.parametrize("d_in, d_out", [(5, 9), (9, 4)])  # forward and reverse mode
def test_jacobian_norm_matches_brute_force(d_in, d_out):
    w1, w2 = 0.5 * _normal(18, (d_in, 6)), 0.5 * _normal(19, (6, d_out))

    def encoder(v):  # a two-layer encoder: no closed form used
        return jnp.tanh(jnp.tanh(v @ w1) @ w2)

    x = _normal(20, (3, d_in))
    want = _brute_force_norm_sq(encoder, x)
    np.testing.assert_allclose(ae.jacobian_norm_sq(encoder, x), want, rtol=1e-5)
    np.testing.assert_allclose(ae.contractive_penalty(encoder, x), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(ae.contractive_penalty, static_argnums=0)(encoder, x), want.mean(),
                               rtol=1e-5)


def test_sigmoid_closed_form_matches_brute_force_and_rifai():
    w, b = 0.3 * _normal(21, (7, 5)), _normal(22, (5,))
    x = _normal(23, (4, 7))

    def encoder(v):
        return jax.nn.sigmoid(v @ w + b)

    h = encoder(x)
    # Rifai et al. (2011): ||J_f(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2
    h64 = np.asarray(h, np.float64)
    rifai = np.mean(np.sum((h64 * (1 - h64)) ** 2 * np.sum(w.astype(np.float64) ** 2, axis=0), axis=1))
    closed = ae.sigmoid_contractive_penalty(h, w)
    np.testing.assert_allclose(closed, rifai, rtol=1e-5)
    np.testing.assert_allclose(closed, _brute_force_norm_sq(encoder, x).mean(), rtol=1e-5)
    np.testing.assert_allclose(closed, ae.contractive_penalty(encoder, x), rtol=1e-5)
    # and their gradients with respect to the weights agree (the generic one by double autodiff)
    g_closed = jax.grad(lambda w_: ae.sigmoid_contractive_penalty(jax.nn.sigmoid(x @ w_ + b), w_))(jnp.asarray(w))
    g_auto = jax.grad(lambda w_: ae.contractive_penalty(lambda v: jax.nn.sigmoid(v @ w_ + b), x))(jnp.asarray(w))
    np.testing.assert_allclose(g_closed, g_auto, rtol=1e-4, atol=1e-7)
    check_grads(lambda w_: ae.sigmoid_contractive_penalty(jax.nn.sigmoid(x @ w_ + b), w_), (jnp.asarray(w),),
                order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_closed_forms_for_linear_and_relu_layers():
    w = _normal(24, (6, 4))
    x = _normal(25, (5, 6))
    # a linear encoder x -> x W has J = W^T everywhere: ||J||_F^2 = ||W||_F^2
    want = np.sum(w.astype(np.float64) ** 2)
    np.testing.assert_allclose(ae.jacobian_norm_sq(lambda v: v @ w, x), np.full(5, want), rtol=1e-5)
    np.testing.assert_allclose(ae.dense_jacobian_norm_sq(np.ones((5, 4), np.float32), w), np.full(5, want),
                               rtol=1e-5)
    relu_slopes = (x @ w > 0).astype(np.float32)
    np.testing.assert_allclose(ae.dense_jacobian_norm_sq(relu_slopes, w),
                               _brute_force_norm_sq(lambda v: jax.nn.relu(v @ w), x), rtol=1e-5)


def test_contractive_penalty_edge_cases():
    x = jnp.ones((3, 4))
    # pytree codes: the norm sums over all leaves
    np.testing.assert_allclose(ae.jacobian_norm_sq(lambda v: {"a": 2 * v, "b": v[:2]}, x), [18.0] * 3)
    # saturated sigmoids: slopes underflow to 0, the value stays finite
    assert float(ae.sigmoid_contractive_penalty(jax.nn.sigmoid(jnp.array([[1e4, -1e4]])), jnp.ones((3, 2)))) == 0.0
    assert ae.jacobian_norm_sq(lambda v: v, jnp.zeros((0, 4))).shape == (0,)
    with pytest.raises(ValueError, match="empty batch"):
        ae.contractive_penalty(lambda v: v, jnp.zeros((0, 4)))
    with pytest.raises(ValueError, match="empty batch"):
        ae.sigmoid_contractive_penalty(jnp.zeros((0, 2)), jnp.ones((3, 2)))
    with pytest.raises(TypeError, match="encoder_fn"):
        ae.contractive_penalty("encoder", x)
    with pytest.raises(ValueError, match=r"H = kernel.shape\[1\] = 2"):
        ae.dense_jacobian_norm_sq(jnp.ones((3, 4)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\[D, H\]"):
        ae.sigmoid_contractive_penalty(jnp.ones((3, 2)) / 2, jnp.ones(2))


# ------------------------------------------------------------------------------------------
# dtypes, jit, documentation, import cost
# ------------------------------------------------------------------------------------------


def test_strict_promotion_and_half_precision():
    # As in suites that turn on strict promotion (equinox): no implicit promotion inside, and
    # bfloat16 in, bfloat16 out. Promotion errors are raised while tracing: eval_shape suffices.
    x = jnp.asarray(_uniform(26, (4, 6)), jnp.bfloat16)
    w = jnp.asarray(_normal(27, (6, 3)), jnp.bfloat16)
    key = jax.random.key(0)
    checks = {
        "mse": lambda: ae.reconstruction_loss(x, x, "mse"),
        "bernoulli": lambda: ae.reconstruction_loss(x, x, "bernoulli"),
        "salt_and_pepper": lambda: ae.corrupt(key, x, "salt_and_pepper", 0.5),
        "gaussian": lambda: ae.corrupt(key, x, "gaussian", 0.1),
        "masking_traced": lambda: jax.jit(lambda lv: ae.corrupt(key, x, "masking", lv))(0.5),
        "sparsity": lambda: ae.sparsity_penalty(x, 0.05),
        "sparsity_logits": lambda: ae.sparsity_penalty_from_logits(x, 0.05),
        "k_sparse": lambda: ae.k_sparse(x, 2),
        "k_sparse_traced": lambda: ae.k_sparse(x, jnp.int32(2)),
        "k_sparse_bounded": lambda: ae.k_sparse(x, jnp.int32(2), max_k=3),
        "dense": lambda: ae.dense_jacobian_norm_sq(x[:, :3], w),
        "sigmoid": lambda: ae.sigmoid_contractive_penalty(x[:, :3], w),
    }
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        for name, fn in checks.items():
            assert jax.eval_shape(fn).dtype == jnp.bfloat16, name
    # computed in float32 and rounded once
    np.testing.assert_allclose(np.float32(ae.reconstruction_loss(x, x, "bernoulli")),
                               ae.reconstruction_loss(x.astype(jnp.float32), x.astype(jnp.float32), "bernoulli"),
                               rtol=2**-8)


def test_jitted_training_loss_traces_once():
    traces = []
    w = jnp.asarray(0.1 * _normal(28, (6, 4)))

    @jax.jit
    def loss(w, x, key):
        traces.append(None)
        x_tilde = ae.corrupt(key, x, "masking", 0.25)
        a = x_tilde @ w
        h = jax.nn.sigmoid(a)
        out = h @ w.T
        return (jnp.mean(ae.reconstruction_loss(x, out, "bernoulli"))
                + ae.sparsity_penalty_from_logits(a, 0.05) + ae.sigmoid_contractive_penalty(h, w)
                + jnp.sum(ae.k_sparse(a, 2)))

    for i in range(3):
        jax.grad(loss)(w, jnp.asarray(_uniform(29 + i, (5, 6))), jax.random.key(i))
    assert len(traces) == 1


# The doctests, `__all__` and the light import of this module: tests/test_math_modules.py.

# ------------------------------------------------------------------------------------------
# genjax.nn DenseAutoencoder
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation, k", [("sigmoid", None), ("linear", 3), ("relu", None)])
def test_dense_autoencoder_shapes_and_closed_form_jacobian(activation, k):
    model = DenseAutoencoder(features=8, hidden=6, activation=activation, k=k)
    x = jnp.asarray(_uniform(30, (5, 8)))
    variables = model.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"kernel", "bias", "output_bias"}  # tied weights
    h, out = model.apply(variables, x)
    assert h.shape == (5, 6) and out.shape == (5, 8)
    if k is not None:
        assert ((np.asarray(h) != 0).sum(-1) == k).all()
        h_more = model.apply(variables, x, 5, method=model.encode)  # a k given at call time wins
        assert ((np.asarray(h_more) != 0).sum(-1) == 5).all()
    closed = model.apply(variables, x, method=model.jacobian_norm_sq)
    brute = _brute_force_norm_sq(lambda v: model.apply(variables, v[None], method=model.encode)[0], x)
    np.testing.assert_allclose(closed, brute, rtol=1e-5)


def test_dense_autoencoder_untied_and_validation():
    model = DenseAutoencoder(features=4, hidden=3, tied=False)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 4)))
    assert variables["params"]["decoder_kernel"].shape == (3, 4)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        model.apply(variables, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="k must be in"):
        DenseAutoencoder(features=4, hidden=3, k=5).init(jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="activation"):
        DenseAutoencoder(features=4, hidden=3, activation="tanh").init(jax.random.key(0), jnp.zeros((1, 4)))
