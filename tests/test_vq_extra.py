"""genjax.vq beyond the VQ-VAE (issue 20): FSQ, LFQ and its entropy penalty, residual VQ with
quantizer dropout and EMA levels, the rotation trick, and k-means++ initialisation.

References, named where used:
- vector-quantize-pytorch 1.32.0's `FSQ` and `LFQ`: their outputs on stored inputs, recorded by
  `tests/parity/record_vq_extra.py` into `tests/parity/vq_extra_peers.npz` (CI compares with
  the recording; `test_live_*` compares with the library itself where torch and
  vector_quantize_pytorch are importable, and skips otherwise);
- brute force in NumPy float64: the softmax over all 2^d LFQ codes, the dense rotation matrix of
  Fifty et al., the residual loop written out with `vq.quantize`.
The shapes are tiny and each test compiles a few programs only (this file runs in seconds).
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import vq

PEERS = np.load(Path(__file__).parent / "parity" / "vq_extra_peers.npz")
FSQ_CASES = ("odd_even", "mixed")
LFQ_CASES = ("d5", "d3")


def _bit_reverse(indices, d):
    return np.array([int(format(int(i), f"0{d}b")[::-1], 2) for i in np.ravel(indices)]).reshape(np.shape(indices))


# ---------------------------------------------------------------------------- FSQ


@pytest.mark.parametrize("name", FSQ_CASES)
def test_fsq_codes_indices_and_codebook_equal_vector_quantize_pytorch(name):
    levels = tuple(int(v) for v in PEERS[f"fsq_levels_{name}"])
    z = PEERS[f"fsq_z_{name}"]
    codes, idx = vq.fsq(z, levels)
    np.testing.assert_array_equal(np.asarray(codes), PEERS[f"fsq_codes_{name}"])
    np.testing.assert_array_equal(np.asarray(idx), PEERS[f"fsq_indices_{name}"])
    size = int(np.prod(levels))
    np.testing.assert_array_equal(np.asarray(vq.fsq_indices_to_codes(jnp.arange(size), levels)),
                                  PEERS[f"fsq_codebook_{name}"])
    # both ways: codes -> indices -> codes
    np.testing.assert_array_equal(np.asarray(vq.fsq_codes_to_indices(codes, levels)), idx)
    np.testing.assert_array_equal(np.asarray(vq.fsq_indices_to_codes(idx, levels)), codes)


def test_fsq_grid_per_level_and_straight_through_gradient():
    """Odd L: the L points {-1..1} step 2/(L-1); even L: {-1, ..., 1 - 2/L} (the half-offset). The
    gradient is that of the bound, tanh'(z + s) h / floor(L/2), as the round is straight-through."""
    levels = (3, 4, 5, 6)
    z = jnp.asarray(np.linspace(-6, 6, 4001)[:, None] * np.ones((1, 4)), jnp.float32)
    codes, idx = vq.fsq(z, levels)
    for i, level in enumerate(levels):
        hw = level // 2
        expected = (np.arange(level) - hw) / hw
        np.testing.assert_allclose(np.unique(np.asarray(codes[:, i])), expected, atol=1e-7)
    assert int(np.max(idx)) < np.prod(levels)
    assert vq.fsq(jnp.zeros((1, 4)), levels)[0].tolist() == [[0.0, 0.0, 0.0, 0.0]]  # bound(0) = 0

    x = jnp.asarray([[0.3, -0.2, 1.1, -0.7]], jnp.float32)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(vq.fsq(x, levels)[0])))(x)
    lv = np.asarray(levels, np.float64)
    half_l = (lv - 1) * 1.001 / 2
    shift = np.arctanh(np.where(lv % 2 == 0, 0.5, 0.0) / half_l)
    expected = (1 - np.tanh(np.asarray(x, np.float64) + shift) ** 2) * half_l / (lv // 2)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


# ---------------------------------------------------------------------------- LFQ


def brute_force_lfq_entropies(z, temperature):
    """NumPy float64 over all 2^d codes: softmax(-||z - c||^2 / T), per-sample and batch entropy."""
    z = np.asarray(z, np.float64).reshape(-1, np.shape(z)[-1])
    d = z.shape[1]
    codes = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))  # [2^d, d]
    logits = -np.sum((z[:, None, :] - codes[None]) ** 2, axis=-1) / temperature
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    p = np.exp(logp)
    per_sample = -np.mean(np.sum(p * logp, axis=1))
    pbar = p.mean(0)
    batch = -np.sum(np.where(pbar > 0, pbar * np.log(np.where(pbar > 0, pbar, 1)), 0))
    return per_sample, batch


@pytest.mark.parametrize("name", LFQ_CASES)
def test_lfq_codes_indices_and_entropies_equal_vector_quantize_pytorch(name):
    """The codes and both entropy terms are LFQ's (at inputs where its log clamp is inactive); the
    index is the paper's (first dimension = least significant bit), LFQ's with the bits reversed."""
    z = PEERS[f"lfq_z_{name}"]
    d = z.shape[-1]
    temperature = 1.0 / float(PEERS[f"lfq_inv_temperature_{name}"])
    codes, idx = vq.lfq(z)
    np.testing.assert_array_equal(np.asarray(codes), PEERS[f"lfq_quantized_{name}"])
    np.testing.assert_array_equal(_bit_reverse(idx, d), PEERS[f"lfq_indices_{name}"])
    np.testing.assert_array_equal(vq.lfq_indices_to_codes(idx, d), codes)
    penalty, per_sample, batch = vq.lfq_entropy_penalty(z, temperature)
    assert float(per_sample) == pytest.approx(float(PEERS[f"lfq_per_sample_entropy_{name}"]), rel=1e-5)
    assert float(batch) == pytest.approx(float(PEERS[f"lfq_batch_entropy_{name}"]), rel=1e-5)
    assert float(penalty) == pytest.approx(float(per_sample) - float(batch), abs=1e-6)


def test_lfq_index_is_the_papers_eq_3():
    """MAGVIT-v2 eq. 3: Index(z) = sum_i 2^(i-1) [z_i > 0], i = 1..d (dimension 1 is the low bit)."""
    z = jnp.array([[1.0, -1.0, -1.0, -1.0], [-1.0, 1.0, -1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert vq.lfq(z)[1].tolist() == [1, 10, 15]


def test_lfq_entropy_factorised_and_chunked_equal_brute_force_over_all_codes():
    """d = 6: the per-bit factorisation (per-sample, exact), the chunked batch entropy (4 chunks of
    16 codes), and its gradient, against the brute-force softmax over all 64 codes. The marginal
    approximation is an upper bound of the batch entropy."""
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(3, 10, 6)) * 0.4).astype(np.float32)
    temperature = 0.7
    def chunked(x):
        out = vq.lfq_entropy_penalty(x, temperature, chunk_size=16)
        return out[0], out

    (_, (penalty, per_sample, batch)), g = jax.jit(jax.value_and_grad(chunked, has_aux=True))(jnp.asarray(z))
    ref_ps, ref_batch = brute_force_lfq_entropies(z, temperature)
    assert float(per_sample) == pytest.approx(ref_ps, rel=2e-6)
    assert float(batch) == pytest.approx(ref_batch, rel=2e-6)
    assert float(penalty) == pytest.approx(ref_ps - ref_batch, rel=1e-5, abs=1e-6)
    marginal = vq.lfq_entropy_penalty(z, temperature, batch_entropy="marginal")[2]
    assert float(marginal) >= ref_batch - 1e-6

    # the gradient through the checkpointed chunks equals the dense softmax's
    codes = jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=6)))

    def dense(x):
        logits = -jnp.sum((x.reshape(-1, 1, 6) - codes) ** 2, axis=-1) / temperature
        logp = jax.nn.log_softmax(logits, axis=1)
        pbar = jnp.mean(jnp.exp(logp), axis=0)
        return -jnp.mean(jnp.sum(jnp.exp(logp) * logp, 1)) + jnp.sum(pbar * jnp.log(pbar))

    np.testing.assert_allclose(g, jax.jit(jax.grad(dense))(jnp.asarray(z)), rtol=1e-4, atol=1e-6)



def test_lfq_batch_entropy_pools_devices_under_axis_name():
    """Two emulated devices (vmap with an axis name): the batch entropy of the whole batch."""
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(2, 8, 3)) * 0.5, jnp.float32)
    per_device = jax.vmap(lambda x: vq.lfq_entropy_penalty(x, 0.5, chunk_size=4, axis_name="d"),
                          axis_name="d")(z)
    whole = vq.lfq_entropy_penalty(z.reshape(16, 3), 0.5)
    np.testing.assert_allclose(per_device[2], [whole[2]] * 2, rtol=1e-6)
    np.testing.assert_allclose(jnp.mean(per_device[1]), whole[1], rtol=1e-6)


def test_bfloat16_inputs_are_computed_in_float32_without_nan():
    """bfloat16 latents give the float32 results of their upcast values (distances and entropy
    terms in float32)."""
    rng = np.random.default_rng(2)
    z16 = jnp.asarray(rng.normal(size=(12, 4)), jnp.bfloat16)
    z32 = z16.astype(jnp.float32)
    for a, b in zip(vq.lfq_entropy_penalty(z16, 0.3), vq.lfq_entropy_penalty(z32, 0.3)):
        assert a.dtype == jnp.float32 and float(a) == pytest.approx(float(b), rel=1e-6)
    np.testing.assert_array_equal(vq.fsq(z16, (5, 4, 3, 8))[1], vq.fsq(z32, (5, 4, 3, 8))[1])
    # (finite values and gradients at bfloat16 latents of 1e4: tests/test_bad_inputs_vq.py, for every function)


# ---------------------------------------------------------------------------- residual VQ


def first_ema_step(codebook, r, idx, decay, eps):
    """NumPy: the first ema_update from ema_init (dm-haiku's zero-debiased EMA, Laplace smoothing)."""
    k = len(codebook)
    counts = np.bincount(idx, minlength=k).astype(np.float64)  # N_i: debiasing (1 - decay) / (1 - decay)
    sums = np.zeros(codebook.shape)
    np.add.at(sums, idx, r)
    n = counts.sum()
    smoothed = (counts + eps) / (n + k * eps) * n
    return np.where(smoothed[:, None] > 0, sums / np.maximum(smoothed, 1e-300)[:, None], codebook), counts


def test_residual_quantize_with_dropout_and_the_ema_update_of_its_levels():
    """Reference: the residual loop written out with vq.quantize (dropped levels are -1 and add
    nothing), and the EMA update of each level on the residuals of the positions that used it
    (the first update from ema_init, written out in NumPy)."""
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.normal(size=(4, 5, 3)), jnp.float32)  # [B, L, D]
    books = jnp.asarray(rng.normal(size=(3, 8, 3)) * np.array([1.0, 0.4, 0.15])[:, None, None], jnp.float32)
    n = jnp.array([3, 1, 0, 2])  # levels per example
    state = jax.vmap(vq.ema_init)(books)
    z_q, idx = vq.residual_quantize(z, state.codebook, n)
    assert idx.shape == (4, 5, 3) and idx.dtype == jnp.int32
    new = vq.residual_ema_update(state, z, idx, decay=0.9, eps=1e-5)
    r, total = np.asarray(z, np.float64), np.zeros(z.shape)
    for q in range(3):
        e, k = vq.quantize(r.astype(np.float32), books[q])
        used = np.broadcast_to((q < np.asarray(n))[:, None], k.shape)
        np.testing.assert_array_equal(np.asarray(idx[..., q]), np.where(used, k, -1))
        book, counts = first_ema_step(np.asarray(books[q], np.float64), r[used], np.asarray(k)[used], 0.9, 1e-5)
        np.testing.assert_allclose(new.codebook[q], book, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new.cluster_size[q], counts, rtol=1e-5)
        total += np.where(used[..., None], e, 0.0)
        r = r - np.where(used[..., None], e, 0.0)
    np.testing.assert_allclose(z_q, total, atol=1e-6)
    assert new.count.tolist() == [1, 1, 1]

    counts = vq.quantizer_dropout(jax.random.key(0), (4000,), 3)
    freq = np.bincount(np.asarray(counts), minlength=4) / 4000
    assert freq[0] == 0 and np.all(np.abs(freq[1:] - 1 / 3) < 0.03)


# ---------------------------------------------------------------------------- rotation trick


def dense_rotation(z, e):
    """lambda R of Fifty et al. (2024), section 4.2, as a dense [D, D] matrix in float64."""
    z, e = np.asarray(z, np.float64), np.asarray(e, np.float64)
    zh, eh = z / np.linalg.norm(z), e / np.linalg.norm(e)
    r = (zh + eh) / np.linalg.norm(zh + eh)
    rot = np.eye(len(z)) - 2 * np.outer(r, r) + 2 * np.outer(eh, zh)
    return np.linalg.norm(e) / np.linalg.norm(z) * rot


def test_rotation_trick_forward_is_e_and_gradient_is_the_dense_formula():
    rng = np.random.default_rng(5)
    z = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    e = jnp.asarray(rng.normal(size=(5, 4)) * 2, jnp.float32)
    g_out = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)

    @jax.jit
    def value_and_vjp(x, g):
        out, pullback = jax.vjp(lambda x: vq.rotation_trick(x, e), x)
        return out, pullback(g)[0]

    out, grad = value_and_vjp(z, g_out)
    np.testing.assert_array_equal(out, e)  # exactly the quantized vectors
    for i in range(5):
        m = dense_rotation(z[i], e[i])
        np.testing.assert_allclose(m @ np.asarray(z[i], np.float64), e[i], rtol=1e-6, atol=1e-6)  # maps z to e
        rot = m * np.linalg.norm(z[i]) / np.linalg.norm(e[i])
        np.testing.assert_allclose(rot.T @ rot, np.eye(4), atol=1e-9)  # a rotation
        np.testing.assert_allclose(grad[i], m.T @ np.asarray(g_out[i], np.float64), rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(jax.jit(jax.grad(lambda c: jnp.sum(vq.rotation_trick(z, c))))(e)) == 0)  # e gets none

    # degenerate cases: z = 0 (straight-through) and e = -z (r = 0, R = I - 2 z_hat z_hat^T)
    zs = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    es = jnp.array([[1.0, 0.0, 0.0], [-2.0, -4.0, -4.0]])
    gs = jax.jit(jax.jacobian(lambda x: vq.rotation_trick(x, es)))(zs)
    np.testing.assert_allclose(gs[0, :, 0, :], np.eye(3))
    zh = np.array([1.0, 2.0, 2.0]) / 3
    np.testing.assert_allclose(gs[1, :, 1, :], 2.0 * (np.eye(3) - 2 * np.outer(zh, zh)), atol=1e-6)


# ---------------------------------------------------------------------------- k-means++


def test_kmeans_plus_plus_finds_the_blobs_and_agrees_across_emulated_devices():
    rng = np.random.default_rng(6)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    z = (centres[rng.integers(0, 4, size=64)] + 0.1 * rng.normal(size=(64, 2))).astype(np.float32)
    key = jax.random.key(7)
    book = vq.kmeans_plus_plus_init(key, z, 4, num_iters=3)
    assert book.shape == (4, 2) and book.dtype == jnp.float32
    dist = np.linalg.norm(np.asarray(book)[:, None] - centres[None], axis=-1)
    assert sorted(dist.argmin(1).tolist()) == [0, 1, 2, 3] and dist.min(1).max() < 0.1  # one code per blob
    # four emulated devices, each with a quarter of the batch: all derive the whole batch's codebook
    shards = jnp.asarray(z).reshape(4, 16, 2)
    per_device = jax.vmap(lambda x: vq.kmeans_plus_plus_init(key, x, 4, num_iters=3, axis_name="dev"),
                          axis_name="dev")(shards)
    for d in range(4):
        np.testing.assert_array_equal(per_device[d], book)
    # fewer distinct latents (3) than codes (4): the codes repeat latents, no NaN (same shapes: no compile)
    few = vq.kmeans_plus_plus_init(key, np.asarray(centres[:3], np.float32)[np.arange(64) % 3], 4, num_iters=3)
    assert {tuple(row) for row in np.asarray(few).tolist()} == {tuple(c) for c in centres[:3].tolist()}


# ---------------------------------------------------------------------------- live peers


def _live_vqtorch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vqp = pytest.importorskip("vector_quantize_pytorch")  # first: it fails fast where missing
        torch = pytest.importorskip("torch")
    return torch, vqp


def test_live_vector_quantize_pytorch_fsq_and_lfq():
    """The recorded comparisons on fresh inputs, against the installed library (not a dependency)."""
    torch, vqp = _live_vqtorch()
    rng = np.random.default_rng(8)
    levels = (8, 6, 5, 3)
    z = (rng.normal(size=(50, 4)) * 2).astype(np.float32)
    codes, idx = vqp.FSQ(list(levels)).eval()(torch.from_numpy(z)[None])
    ours, our_idx = vq.fsq(z, levels)
    np.testing.assert_array_equal(np.asarray(ours), codes[0].detach().numpy())
    np.testing.assert_array_equal(np.asarray(our_idx), idx[0].numpy())

    z = (rng.normal(size=(30, 4)) * 0.3).astype(np.float32)
    lfq = vqp.LFQ(dim=4, entropy_loss_weight=1.0, commitment_loss_weight=0.0).train()
    (quantized, idx, _), breakdown = lfq(torch.from_numpy(z)[None], inv_temperature=1.0, return_loss_breakdown=True)
    ours, our_idx = vq.lfq(z)
    np.testing.assert_array_equal(np.asarray(ours), quantized[0].detach().numpy())
    np.testing.assert_array_equal(_bit_reverse(our_idx, 4), idx[0].numpy())
    _, per_sample, batch = vq.lfq_entropy_penalty(z, 1.0)
    assert float(per_sample) == pytest.approx(breakdown.per_sample_entropy.item(), rel=1e-5)
    assert float(batch) == pytest.approx(breakdown.batch_entropy.item(), rel=1e-5)
