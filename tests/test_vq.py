"""genjax.vq: nearest-code assignment, the straight-through gradient, the VQ losses, the EMA
codebook (against a NumPy transcription and against dm-haiku's VectorQuantizerEMA), diagnostics,
and the pmap statistics (in a subprocess with 4 virtual CPU devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from genjax import vq

WORKER = Path(__file__).with_name("vq_worker.py")
REPO = WORKER.parent.parent


def brute_force_nearest(z: np.ndarray, codebook: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices and all squared distances [N, K] from the [N, K, D] difference tensor, in float64."""
    flat = z.reshape(-1, z.shape[-1]).astype(np.float64)
    d = np.sum((flat[:, None, :] - codebook[None, :, :].astype(np.float64)) ** 2, axis=-1)  # [N, K]
    return np.argmin(d, axis=1).reshape(z.shape[:-1]), d


def assert_same_assignment(idx, z, codebook):
    """Equal to the brute-force argmin, or (float32 rounding of a near tie) just as near."""
    ref, d = brute_force_nearest(np.asarray(z), np.asarray(codebook))
    idx = np.asarray(idx).reshape(-1)
    rows = np.arange(len(idx))
    gap = d[rows, idx] - d[rows, ref.reshape(-1)]
    assert np.all(gap <= 1e-5 * (1 + d[rows, ref.reshape(-1)])), gap.max()
    assert np.mean(idx == ref.reshape(-1)) > 0.99


# ---------------------------------------------------------------------------- quantize


@pytest.mark.parametrize(
    "shape",
    [(6,), (50, 6), (4, 9, 6), (3, 7, 7, 6), (2, 3, 4, 5, 6)],
    ids=["one-vector", "N,D", "1-D sequences", "2-D grid", "3-D volume"],
)
def test_quantize_matches_brute_force_numpy(shape):
    """Reference: NumPy argmin over the full [N, K, D] tensor of differences."""
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(32, shape[-1])).astype(np.float32)
    z = rng.normal(size=shape).astype(np.float32)
    z_q, idx = vq.quantize(z, codebook)
    assert idx.shape == shape[:-1] and idx.dtype == jnp.int32
    assert z_q.shape == shape and z_q.dtype == jnp.float32
    assert_same_assignment(idx, z, codebook)
    np.testing.assert_allclose(z_q, codebook[np.asarray(idx)], atol=1e-6)
    np.testing.assert_array_equal(vq.nearest_code(z, codebook), idx)


@pytest.mark.parametrize("exact", [True, False])
def test_quantize_ties_go_to_the_lowest_index(exact):
    codebook = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    z = jnp.array([[0.0, 0.0], [2.0, 0.0]])  # equidistant from all / from 0 and 2
    _, idx = vq.quantize(z, codebook, exact=exact)
    assert idx.tolist() == [0, 0]
    # ten copies of one code (more than the 8 re-ranked candidates): the lowest index still wins
    dup = jnp.concatenate([jnp.full((3, 2), 5.0), jnp.ones((10, 2)), jnp.full((3, 2), -5.0)])
    assert vq.nearest_code(jnp.array([[1.0, 1.0], [1.2, 0.9]]), dup, exact=exact).tolist() == [3, 3]


@pytest.mark.parametrize("offset", [30.0, 100.0, 300.0, 1000.0])
def test_nearest_code_is_exact_at_large_shared_offsets(offset):
    """Reference: float64 NumPy argmin of the [N, K, D] differences of the same float32 inputs.
    Latents and codes sharing an offset made ||z||^2 - 2 z.e + ||e||^2 cancel in float32 (2, 8, 107
    and 727 of these 2000 assignments wrong at offsets 30, 100, 300, 1000 before the fix); the
    centred ranking plus the direct re-ranking of the best 8 gets every assignment right, and a
    latent equal to a code maps to it."""
    rng = np.random.default_rng(int(offset))
    codebook = (rng.normal(size=(64, 16)) + offset).astype(np.float32)
    z = (rng.normal(size=(2000, 16)) + offset).astype(np.float32)
    ref, d = brute_force_nearest(z, codebook)
    rows = np.arange(len(ref))
    second = np.partition(d, 1, axis=1)[:, 1]
    assert np.all(second - d[rows, ref] > 1e-5 * d[rows, ref]), "no near-tie below float32 rounding (~1e-6)"
    idx = vq.nearest_code(z, codebook)
    assert int(np.sum(np.asarray(idx) != ref)) == 0
    np.testing.assert_array_equal(vq.quantize(z, codebook)[1], ref)
    perm = rng.permutation(64)
    np.testing.assert_array_equal(vq.nearest_code(codebook[perm], codebook), perm)  # z == e_k -> k
    z_q, self_idx = vq.quantize(codebook, codebook)
    np.testing.assert_array_equal(self_idx, np.arange(64))
    np.testing.assert_array_equal(z_q, codebook)
    # the cheaper ranking alone (exact=False) stays a valid, mostly right assignment
    fast = np.asarray(vq.nearest_code(z, codebook, exact=False))
    assert fast.min() >= 0 and fast.max() < 64 and np.mean(fast == ref) > 0.9


def test_straight_through_gradient_is_the_identity():
    """d z_q / d z = I (the straight-through estimator); nothing reaches the codebook through z_q."""
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(2, 3, 3, 4)), jnp.float32)
    codebook = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
    cot = jnp.asarray(rng.normal(size=z.shape), jnp.float32)
    _, vjp = jax.vjp(lambda z, c: vq.quantize(z, c)[0], z, codebook)
    dz, dcodebook = vjp(cot)
    np.testing.assert_array_equal(dz, cot)
    np.testing.assert_array_equal(dcodebook, jnp.zeros_like(codebook))
    jac = jax.jacobian(lambda z: vq.quantize(z, codebook)[0])(z[0, 0, 0])
    np.testing.assert_array_equal(jac, jnp.eye(4))


def test_codebook_term_moves_only_the_codebook_and_commitment_only_the_encoder():
    """A linear encoder z = x W: grad of the codebook loss w.r.t. W is 0, of the commitment loss
    w.r.t. the codebook is 0; the other gradients are the closed forms 2(e - z)/(N D) and
    2(z - e)/(N D) (summed over the latents assigned to each code / chained through W)."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    codebook = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)

    def terms(w, codebook):
        z = x @ w  # [N, D]
        _, idx = vq.quantize(z, codebook)
        e = vq.lookup(codebook, idx)
        return vq.codebook_loss(z, e), vq.commitment_loss(z, e), z, idx

    g_book = jax.grad(lambda w, c: terms(w, c)[0], argnums=(0, 1))(w, codebook)
    g_commit = jax.grad(lambda w, c: terms(w, c)[1], argnums=(0, 1))(w, codebook)
    np.testing.assert_array_equal(g_book[0], jnp.zeros_like(w))
    np.testing.assert_array_equal(g_commit[1], jnp.zeros_like(codebook))

    _, _, z, idx = terms(w, codebook)
    z, idx, c = np.asarray(z, np.float64), np.asarray(idx), np.asarray(codebook, np.float64)
    n = z.size
    expected_book = np.zeros_like(c)
    np.add.at(expected_book, idx, 2 * (c[idx] - z) / n)
    expected_w = np.asarray(x, np.float64).T @ (2 * (z - c[idx]) / n)
    np.testing.assert_allclose(g_book[1], expected_book, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_commit[0], expected_w, rtol=1e-5, atol=1e-7)


def test_loss_values_are_the_means_of_squared_errors():
    """Closed form: mean over all N*D entries (dm-haiku's jnp.mean((q - z)**2)); vq = book + beta commit."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 7, 7, 3)).astype(np.float32)
    e = rng.normal(size=z.shape).astype(np.float32)
    mse = np.mean((z.astype(np.float64) - e) ** 2)
    assert float(vq.codebook_loss(z, e)) == pytest.approx(mse, rel=1e-5)
    assert float(vq.commitment_loss(z, e)) == pytest.approx(mse, rel=1e-5)
    assert float(vq.vq_loss(z, e)) == pytest.approx(1.25 * mse, rel=1e-5)  # paper's default beta = 0.25
    assert float(vq.vq_loss(z, e, beta=2.0)) == pytest.approx(3.0 * mse, rel=1e-5)
    betas = jnp.array([0.1, 0.25, 1.0, 2.0])
    swept = jax.vmap(lambda b: vq.vq_loss(z, e, b))(betas)  # a vmapped beta sweep
    np.testing.assert_allclose(swept, (1 + np.asarray(betas)) * mse, rtol=1e-5)


def test_loss_gradients_check_numerically():
    """Finite differences agree where no stop_gradient hides a dependence: the codebook term in
    e_k, the commitment term in z."""
    rng = np.random.default_rng(4)
    z = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    e = jnp.asarray(rng.normal(size=(5, 3)), z.dtype)
    check_grads(lambda e: vq.codebook_loss(z, e), (e,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)
    check_grads(lambda z: vq.commitment_loss(z, e), (z,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


def test_extreme_and_half_precision_inputs_stay_finite():
    rng = np.random.default_rng(5)
    codebook = jnp.asarray(rng.normal(size=(16, 8)) * 1e4, jnp.float32)
    z = jnp.asarray(rng.normal(size=(64, 8)) * 1e4, jnp.float32)
    z_q, idx = vq.quantize(z, codebook)
    assert_same_assignment(idx, z, codebook)
    grads = jax.jit(jax.grad(lambda z, c: vq.vq_loss(z, vq.lookup(c, vq.quantize(z, c)[1]))
                             + jnp.sum(vq.quantize(z, c)[0]), argnums=(0, 1)))(z, codebook)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    # bfloat16 latents: assigned in float32, z_q returned in bfloat16
    zb = jnp.asarray(rng.normal(size=(3, 4, 4, 8)), jnp.bfloat16)
    cb = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
    zq_b, idx_b = vq.quantize(zb, cb)
    assert zq_b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(idx_b, vq.quantize(zb.astype(jnp.float32), cb)[1])
    assert vq.vq_loss(zb, vq.lookup(cb, idx_b).astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_empty_batches():
    codebook = jnp.ones((4, 3))
    for shape in [(0, 3), (2, 0, 5, 3)]:
        z_q, idx = vq.quantize(jnp.zeros(shape), codebook)
        assert z_q.shape == shape and idx.shape == shape[:-1]
        e = vq.lookup(codebook, idx)
        assert float(vq.vq_loss(z_q, e)) == 0.0
        assert float(vq.perplexity(idx, 4)) == 1.0
        assert vq.codebook_usage(idx, 4).tolist() == [0, 0, 0, 0]
    state = vq.ema_update(vq.ema_init(codebook), jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))
    np.testing.assert_array_equal(state.codebook, codebook)  # no data yet: unchanged, not 0/0 = NaN
    assert int(state.count) == 1


def test_bad_arguments_say_what_was_expected():
    cb = jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"`codebook` must have shape \[K, D\]"):
        vq.quantize(jnp.zeros((2, 3)), jnp.zeros((4, 3, 1)))
    with pytest.raises(ValueError, match=r"`z` must have shape \[..., D\] with D = 3"):
        vq.quantize(jnp.zeros((2, 5)), cb)
    with pytest.raises(TypeError, match="`z` must have a real"):
        vq.quantize(jnp.zeros((2, 3), jnp.complex64), cb)
    # the shared policy: integer latents are promoted to float32, not rejected
    z_int = jnp.array([[0, 1, 2], [3, 3, 3]], jnp.int32)
    z_q, idx = vq.quantize(z_int, jnp.arange(12.0).reshape(4, 3))
    assert z_q.dtype == jnp.float32 and idx.tolist() == [0, 1]
    with pytest.raises(ValueError, match="`z` and `e_k` must have the same shape"):
        vq.codebook_loss(jnp.zeros((2, 3)), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"`beta` must be a finite number in \[0, inf\)"):
        vq.vq_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), beta=-1.0)
    state = vq.ema_init(cb)
    with pytest.raises(ValueError, match="`indices` must have the leading shape"):
        vq.ema_update(state, jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match="`indices` must have an integer dtype"):
        vq.ema_update(state, jnp.zeros((2, 3)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match=r"`decay` must be a finite number in \[0, 1\)"):
        vq.ema_update(state, jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), decay=1.0)
    with pytest.raises(TypeError, match="`state` must be an EmaCodebook"):
        vq.ema_update({"codebook": cb}, jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"`num_codes` must be an int in \[1, inf\]"):
        vq.perplexity(jnp.zeros((2,), jnp.int32), 0)
    with pytest.raises(ValueError, match="at least one latent vector"):
        vq.restart_dead_codes(jax.random.key(0), state, jnp.zeros((0, 3)))


def test_concrete_indices_out_of_range_are_errors_and_traced_ones_are_documented():
    """Out-of-range indices were silently ignored (ema_update, codebook_usage, perplexity) or gave
    NaN rows (lookup). Concrete ones are now a ValueError; under jit they keep the documented
    behaviour: not counted, NaN rows."""
    cb = jnp.arange(8.0).reshape(4, 2)
    state = vq.ema_init(cb)
    z = jnp.ones((3, 2))
    for bad in (jnp.array([0, 4, 1]), np.array([-1, 0, 1])):
        with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
            vq.ema_update(state, z, bad)
        with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
            vq.codebook_usage(bad, 4)
        with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
            vq.perplexity(bad, 4)
        with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
            vq.lookup(cb, bad)
    traced = jnp.array([0, 4, 1])
    assert jax.jit(lambda i: vq.codebook_usage(i, 4))(traced).tolist() == [1, 1, 0, 0]
    assert float(jax.jit(lambda i: vq.perplexity(i, 4))(traced)) == pytest.approx(2.0)
    rows = jax.jit(lambda i: vq.lookup(cb, i))(traced)
    assert np.all(np.isnan(rows[1])) and rows[2].tolist() == [2.0, 3.0]
    ignored = jax.jit(lambda s, i: vq.ema_update(s, z, i, eps=0.0))(state, traced)
    assert float(jnp.sum(ignored.cluster_size)) == pytest.approx(2.0)  # the index 4 counts for no code


def test_static_arguments_of_the_ema_codebook():
    """Strings were accepted by the range check (jnp.ndim("0.3") == 0) and failed later inside the
    kernel; booleans and NaN are rejected; num_codes=2.5 is a TypeError, never truncated."""
    state = vq.ema_init(jnp.zeros((4, 3)))
    z, idx = jnp.ones((2, 3)), jnp.zeros((2,), jnp.int32)
    for name in ("decay", "eps"):
        for bad, err in (("0.3", TypeError), (True, TypeError), (None, TypeError), (float("nan"), ValueError),
                         (-0.1, ValueError), (float("inf"), ValueError)):
            with pytest.raises(err, match=f"`{name}`"):
                vq.ema_update(state, z, idx, **{name: bad})
    with pytest.raises(ValueError, match="`decay`"):
        vq.ema_update(state, z, idx, decay=1.0)
    for bad, err in (("0.3", TypeError), (False, TypeError), (float("nan"), ValueError), (-1.0, ValueError)):
        with pytest.raises(err, match="`threshold`"):
            vq.restart_dead_codes(jax.random.key(0), state, z, threshold=bad)
        with pytest.raises(err, match="`beta`"):
            vq.vq_loss(z, z, beta=bad)
    for bad, err in ((2.5, TypeError), (True, TypeError), ("4", TypeError), (0, ValueError), (-3, ValueError)):
        with pytest.raises(err, match="`num_codes`"):
            vq.codebook_usage(idx, bad)
        with pytest.raises(err, match="`num_codes`"):
            vq.perplexity(idx, bad)
    with pytest.raises(TypeError, match="`key`"):
        vq.restart_dead_codes(None, state, z)
    with pytest.raises(ValueError, match="`state.hidden_sum` must have shape"):
        vq.ema_update(state._replace(hidden_sum=jnp.zeros((4, 2))), z, idx)


def test_ema_statistics_are_float32_for_half_precision_latents_and_never_nan():
    """bfloat16/float16 latents are accumulated in float32 (the state's dtype): the first update's
    codes are the float32 cluster means of the rounded latents. A traced decay of 1 (or a Python
    decay that rounds to 1 in float32) used to divide by 1 - decay^t = 0."""
    rng = np.random.default_rng(13)
    z32 = rng.normal(size=(500, 2)).astype(np.float32)
    cb = jnp.asarray([[-1.0, 0.0], [1.0, 0.0]])
    for dtype in (jnp.bfloat16, jnp.float16):
        z = jnp.asarray(z32, dtype)
        _, idx = vq.quantize(z, cb)
        state = vq.ema_update(vq.ema_init(cb), z, idx, eps=0.0)
        assert all(leaf.dtype == jnp.float32 for leaf in (state.codebook, state.hidden_count, state.hidden_sum,
                                                          state.cluster_size))
        zr, i = np.asarray(z, np.float64), np.asarray(idx)
        np.testing.assert_allclose(state.codebook, np.stack([zr[i == k].mean(0) for k in range(2)]), rtol=1e-5)
    z = jnp.asarray(z32)
    _, idx = vq.quantize(z, cb)
    for decay in (0.99999999, jnp.float32(1.0)):
        new = jax.jit(lambda d: vq.ema_update(vq.ema_init(cb), z, idx, decay=d))(decay)
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(new))


# ---------------------------------------------------------------------------- diagnostics


def test_perplexity_and_usage():
    """Closed forms: K equally used codes -> K, one code -> 1; and dm-haiku's formula
    exp(-sum p log(p + 1e-10)) of the mean one-hot encoding, evaluated in NumPy."""
    k = 16
    assert float(vq.perplexity(jnp.arange(64) % k, k)) == pytest.approx(k, rel=1e-6)
    assert float(vq.perplexity(jnp.full((3, 7, 7), 5), k)) == pytest.approx(1.0)
    idx = np.random.default_rng(6).integers(0, k, size=(8, 7, 7)) ** 2 % k  # skewed usage
    p = np.mean(np.eye(k)[idx.reshape(-1)], axis=0)
    haiku_formula = np.exp(-np.sum(p * np.log(p + 1e-10)))
    assert float(vq.perplexity(jnp.asarray(idx), k)) == pytest.approx(haiku_formula, rel=1e-5)
    np.testing.assert_array_equal(vq.codebook_usage(jnp.asarray(idx), k), np.bincount(idx.reshape(-1), minlength=k))


# ---------------------------------------------------------------------------- the EMA codebook


def numpy_ema_reference(codebook, batches, decay, eps):
    """The update equations transcribed in float64 NumPy, assigning each batch with the current
    codebook (dm-haiku's order: assign with the old codes, then update):

        n_i = #{j: k_j = i},  s_i = sum_{j: k_j = i} z_j
        h_i <- decay h_i + (1 - decay) n_i,   H_i <- decay H_i + (1 - decay) s_i   (h_0 = H_0 = 0)
        N_i = h_i / (1 - decay^t),  m_i = H_i / (1 - decay^t)           (zero debiasing, t = 1, 2, ...)
        n = sum_i N_i,  N~_i = (N_i + eps) / (n + K eps) n               (Laplace smoothing)
        e_i = m_i / N~_i
    """
    e = np.asarray(codebook, np.float64)
    k, d = e.shape
    h, hs = np.zeros(k), np.zeros((k, d))
    out = []
    for t, z in enumerate(batches, start=1):
        flat = np.asarray(z, np.float64).reshape(-1, d)
        idx = np.argmin(((flat[:, None] - e[None]) ** 2).sum(-1), axis=1)
        n_i = np.bincount(idx, minlength=k).astype(np.float64)
        s_i = np.zeros((k, d))
        np.add.at(s_i, idx, flat)
        h = decay * h + (1 - decay) * n_i
        hs = decay * hs + (1 - decay) * s_i
        big_n = h / (1 - decay**t)
        m = hs / (1 - decay**t)
        n = big_n.sum()
        smoothed = (big_n + eps) / (n + k * eps) * n
        e = m / smoothed[:, None]
        out.append((idx.reshape(np.shape(z)[:-1]), e.copy(), big_n.copy()))
    return out


@pytest.mark.parametrize("decay,eps", [(0.99, 1e-5), (0.9, 0.1), (0.0, 1e-5)])
def test_ema_update_matches_the_numpy_transcription_step_by_step(decay, eps):
    rng = np.random.default_rng(7)
    k, d = 12, 3
    codebook = rng.uniform(-1, 1, size=(k, d)).astype(np.float32)
    # a drifting distribution that leaves some codes unused at first
    batches = [(rng.normal(size=(4, 5, 5, d)) * 0.7 + 0.2 * t).astype(np.float32) for t in range(6)]
    update = jax.jit(lambda s, z, i: vq.ema_update(s, z, i, decay=decay, eps=eps))
    state = vq.ema_init(codebook)
    for t, (z, (ref_idx, ref_e, ref_n)) in enumerate(zip(batches, numpy_ema_reference(codebook, batches, decay, eps))):
        _, idx = vq.quantize(z, state.codebook)
        np.testing.assert_array_equal(idx, ref_idx)
        state = update(state, z, idx)
        np.testing.assert_allclose(state.codebook, ref_e, rtol=2e-5, atol=2e-6, err_msg=f"step {t + 1}")
        np.testing.assert_allclose(state.cluster_size, ref_n, rtol=2e-5, atol=1e-6)
        assert int(state.count) == t + 1
    assert update._cache_size() == 1  # one compilation for all six steps


def test_first_ema_update_gives_the_cluster_means():
    """Closed form: after one update the debiased averages are the batch statistics, so with
    eps = 0 every used code is the mean of its latents (Lloyd's k-means step)."""
    rng = np.random.default_rng(8)
    codebook = rng.normal(size=(6, 2)).astype(np.float32)
    z = rng.normal(size=(200, 2)).astype(np.float32)
    _, idx = vq.quantize(z, codebook)
    state = vq.ema_update(vq.ema_init(codebook), z, idx, decay=0.99, eps=0.0)
    for i in np.unique(np.asarray(idx)):
        np.testing.assert_allclose(state.codebook[i], z[np.asarray(idx) == i].mean(0), rtol=1e-4, atol=1e-5)


# Reference: dm-haiku 0.0.17 `hk.nets.VectorQuantizerEMA(embedding_dim=2, num_embeddings=4,
# commitment_cost=0.25, decay=0.9, epsilon=0.01)`, its "embeddings" state set to HAIKU_INIT.T and
# applied (is_training=True) to HAIKU_BATCHES in turn; the printed encoding_indices, perplexity and
# embeddings (transposed to [K, D]) after each call, float32 (jax 0.10.2, CPU).
HAIKU_INIT = [[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [5.0, -5.0]]
HAIKU_BATCHES = [
    [[0.1, -0.2], [0.9, 1.2], [1.1, 0.8], [-0.7, 1.3], [0.2, 0.1]],
    [[0.5, 0.5], [1.5, 1.0], [-1.0, 0.5], [-1.2, 1.1], [0.0, -0.3]],
    [[0.3, 0.2], [2.0, 2.0], [-0.5, 1.0], [0.1, 0.0], [1.0, 1.5]],
]
HAIKU_OUTPUT = [
    ([0, 1, 1, 2, 0], 2.871746063232422,
     [[0.1504477858543396, -0.05014926195144653], [1.0029851198196411, 1.0029851198196411],
      [-0.6986139416694641, 1.2974257469177246], [0.0, 0.0]]),
    ([0, 1, 2, 2, 0], 2.871746063232422,
     [[0.20323646068572998, 0.029033774510025978], [1.179992914199829, 1.0012060403823853],
      [-0.9772661328315735, 0.9565467238426208], [0.0, 0.0]]),
    ([0, 1, 2, 3, 1], 3.7892916202545166,
     [[0.22507792711257935, 0.06777270883321762], [1.3234282732009888, 1.3345121145248413],
      [-0.8444574475288391, 0.9680636525154114], [0.09814039617776871, 0.0]]),
]


def test_ema_update_reproduces_dm_haiku_vector_quantizer_ema():
    """The unused code 3 collapses to the origin at step 1 (m_3 = 0) and is picked up at step 3."""
    state = vq.ema_init(jnp.asarray(HAIKU_INIT, jnp.float32))
    for x, (ref_idx, ref_perplexity, ref_codebook) in zip(HAIKU_BATCHES, HAIKU_OUTPUT):
        x = jnp.asarray(x, jnp.float32)
        _, idx = vq.quantize(x, state.codebook)
        assert idx.tolist() == ref_idx
        assert float(vq.perplexity(idx, 4)) == pytest.approx(ref_perplexity, rel=1e-6)
        state = vq.ema_update(state, x, idx, decay=0.9, eps=0.01)
        np.testing.assert_allclose(state.codebook, ref_codebook, rtol=1e-6, atol=1e-7)


def test_ema_update_against_installed_dm_haiku():
    """The same comparison on random data when dm-haiku happens to be installed (not a dependency)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hk = pytest.importorskip("haiku")
    k, d, decay, eps = 16, 4, 0.9, 1e-5

    def f(x):
        m = hk.nets.VectorQuantizerEMA(embedding_dim=d, num_embeddings=k, commitment_cost=0.25, decay=decay,
                                       epsilon=eps)
        return m(x, is_training=True)["encoding_indices"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf = hk.transform_with_state(f)
        rng = np.random.default_rng(9)
        xs = [jnp.asarray(rng.normal(size=(3, 5, 5, d)) + 0.1 * t, jnp.float32) for t in range(6)]
        params, hk_state = tf.init(jax.random.key(0), xs[0])
        state = vq.ema_init(jnp.asarray(hk_state["vector_quantizer_ema"]["embeddings"]).T)
        for x in xs:
            hk_idx, hk_state = tf.apply(params, hk_state, None, x)
            _, idx = vq.quantize(x, state.codebook)
            np.testing.assert_array_equal(idx, hk_idx)
            state = vq.ema_update(state, x, idx, decay, eps)
            np.testing.assert_allclose(state.codebook, np.asarray(hk_state["vector_quantizer_ema"]["embeddings"]).T,
                                       rtol=1e-6, atol=1e-7)


def test_restart_dead_codes_moves_only_dead_codes_onto_latents():
    rng = np.random.default_rng(10)
    codebook = rng.normal(size=(8, 3)).astype(np.float32)
    z = (rng.normal(size=(40, 3)) * 0.1 + 5.0).astype(np.float32)  # far from every code
    state = vq.ema_init(codebook)
    # usage after one update from batch whose latents all go to one code
    _, idx = vq.quantize(z, state.codebook)
    state = vq.ema_update(state, z, idx, decay=0.9, eps=1e-5)
    live = np.asarray(state.cluster_size) >= 1.0
    assert live.sum() >= 1 and (~live).sum() >= 1
    restarted = vq.restart_dead_codes(jax.random.key(0), state, z, threshold=1.0)
    np.testing.assert_array_equal(np.asarray(restarted.codebook)[live], np.asarray(state.codebook)[live])
    for row in np.asarray(restarted.codebook)[~live]:
        assert np.any(np.all(row == z, axis=1)), "a restarted code is one of the latents"
    assert np.all(np.asarray(restarted.cluster_size)[~live] == 0)
    assert np.all(np.asarray(restarted.hidden_sum)[~live] == 0)
    np.testing.assert_array_equal(restarted.hidden_count[live], state.hidden_count[live])
    same = vq.restart_dead_codes(jax.random.key(0), state, z, threshold=0.0)  # threshold 0: nothing is dead
    np.testing.assert_array_equal(same.codebook, state.codebook)


def test_ema_state_is_a_pytree_that_jits_and_vmaps():
    codebooks = jnp.asarray(np.random.default_rng(11).normal(size=(3, 8, 2)), jnp.float32)
    states = jax.vmap(vq.ema_init)(codebooks)
    z = jnp.asarray(np.random.default_rng(12).normal(size=(3, 10, 2)), jnp.float32)
    idx = jax.vmap(lambda z, s: vq.quantize(z, s.codebook)[1])(z, states)
    new = jax.jit(jax.vmap(lambda s, z, i: vq.ema_update(s, z, i)))(states, z, idx)
    for r in range(3):
        one = vq.ema_update(jax.tree.map(lambda x: x[r], states), z[r], idx[r])
        np.testing.assert_allclose(new.codebook[r], one.codebook, rtol=1e-6)
    assert len(jax.tree.leaves(new)) == 5


# ---------------------------------------------------------------------------- several devices


@pytest.mark.slow
def test_pmap_statistics_equal_single_device_on_the_whole_batch():
    """On 4 virtual CPU devices: ema_update / codebook_usage / perplexity / restart_dead_codes with
    axis_name, and 2 steps of the VQ-VAE experiment's step under pmap, equal one device on the whole
    batch (vq_worker.py prints the largest differences)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(WORKER)], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["indices_equal"] and result["usage_equal"]
    assert result["codebook_max_diff"] < 1e-5
    assert result["cluster_size_max_diff"] < 1e-4
    assert result["perplexity_diff"] < 1e-4
    assert result["restarted"] > 0 and result["restart_replicas_identical"]
    assert result["restart_max_diff"] < 1e-5
    assert result["train_params_max_diff"] < 1e-4
    assert result["train_codebook_max_diff"] < 1e-4


def test_concrete_indices_are_checked_inside_jit_too():
    """NumPy indices closed over by a jit trace are constants: still checked."""
    cb = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
        jax.jit(lambda c: vq.lookup(c, np.array([0, 7])))(cb)
    with pytest.raises(ValueError, match=r"`indices` must have entries in \[0, 4\)"):
        jax.jit(lambda s: vq.ema_update(s, jnp.ones((2, 2)), np.array([0, 4])))(vq.ema_init(cb))
