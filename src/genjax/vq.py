"""Vector quantization (VQ-VAE): nearest-code assignment with the straight-through gradient, the
codebook and commitment losses, and the exponential-moving-average (EMA) codebook as explicit state.

Public functions (all pure; safe under ``jit``, ``vmap``, ``grad`` and ``pmap``):

Quantization:
    ``quantize(z, codebook) -> (z_q, indices)``, ``nearest_code``, ``lookup``.
Losses (scalar means, as the paper's objective):
    ``codebook_loss``, ``commitment_loss``, ``vq_loss``.
The EMA codebook (an explicit state pytree, for training without the codebook loss):
    ``EmaCodebook``, ``ema_init``, ``ema_update``, ``restart_dead_codes``.
Diagnostics:
    ``codebook_usage``, ``perplexity``.
Implicit codebooks (no codebook array, no nearest-neighbour search):
    ``fsq`` with ``fsq_codes_to_indices``/``fsq_indices_to_codes`` (finite scalar quantization);
    ``lfq`` with ``lfq_indices_to_codes`` and ``lfq_entropy_penalty`` (lookup-free quantization).
Residual VQ (a stack of codebooks on successive residuals):
    ``residual_quantize``, ``quantizer_dropout``, ``residual_ema_update``.
Gradient estimators and initialisation:
    ``rotation_trick`` (instead of the straight-through gradient), ``kmeans_plus_plus_init``.

The VQ-VAE objective (van den Oord et al. 2017, eq. 3) for one encoder output ``z_e(x)`` and its
nearest code ``e_k``::

    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e_k||^2 + beta ||z_e(x) - sg[e_k]||^2

``quantize`` returns ``z_q = z + sg[e_k - z]``: its value is ``e_k``, its gradient with respect
to ``z`` the identity (the straight-through estimator), and it passes no gradient to the codebook.
The codebook learns either from ``codebook_loss`` (a gradient step on ``e_k``; take ``e_k`` with
``lookup(codebook, indices)``, which does carry the gradient) or, without any loss, from
``ema_update`` (the paper's Appendix A.1), in which case only ``beta * commitment_loss`` is added
to the reconstruction loss.

A typical training step with the EMA codebook kept in ``TrainState.extras``::

    z = encode(params, x)                                   # [B, H, W, D]
    z_q, idx = vq.quantize(z, ema.codebook)                 # [B, H, W, D], [B, H, W]
    loss = recon_loss(decode(params, z_q), x) + beta * vq.commitment_loss(z, vq.lookup(ema.codebook, idx))
    ...
    ema = vq.ema_update(ema, z, idx, decay=0.99, axis_name=axis_name)   # after the gradient step

Conventions:

- **Shapes.** Latents are ``[..., D]``: any number of leading axes (a batch of vectors
  ``[N, D]``, sequences ``[B, L, D]``, image grids ``[B, H, W, D]``, volumes ``[B, T, H, W, D]``);
  all leading positions are quantized independently against the codebook ``[K, D]``. Indices
  have the leading shape ``[...]`` and dtype int32. Nothing is broadcast silently: mismatched
  shapes raise ``ValueError`` naming the arguments.
- **Distances** are squared Euclidean. The codes are ranked with one matrix product on latents and
  codes centred at the codebook mean (memory ``[N, K]``, never ``[N, K, D]``), in at least
  float32 and at full matmul precision (TPUs otherwise multiply in bfloat16); by default the 8
  best are then re-ranked by the direct ``||z - e||^2``, which makes the assignment exact even
  when latents and codes share a large offset (``nearest_code`` states the guarantee;
  ``exact=False`` skips the re-ranking). Ties go to the lowest index.
- **Dtypes.** Real inputs are accepted: integer and boolean arrays are promoted to float32
  (``genjax._checks``' policy); index arrays must be integers. Half-precision latents are
  quantized in float32; ``z_q`` has ``z``'s dtype and the losses are returned in the input dtype
  (a loss beyond float16's range, 65504, is inf there). EMA statistics are kept in at least
  float32.
- **Checks.** Arguments are checked in Python before the jitted kernel: shapes, dtypes, static
  numbers (``beta``, ``decay``, ``eps``, ``threshold``: NaN, infinities, strings and booleans are
  rejected) and concrete indices outside ``0..K-1`` (``ValueError``). Traced values cannot be
  checked; each function documents what it does with them.
- **Reductions.** The losses are means over every entry (``N * D`` of them), exactly like
  dm-haiku's and Sonnet's ``VectorQuantizer``: ``mean_j ||z_j - e_{k_j}||^2 / D``. An empty batch
  gives 0.
- **Several devices.** ``ema_update``, ``codebook_usage``, ``perplexity`` and
  ``restart_dead_codes`` take ``axis_name``: under ``pmap``/``shard_map`` the counts and sums are
  added across that axis, so data-parallel training gives the codebook that one device would get
  from the whole batch. Under ``jit`` with the batch sharded over devices (``genjax.train``'s
  ``parallel="sharded"``, the default on several devices) no ``axis_name`` is needed: the
  function sees the global batch and XLA adds up the shards itself.

References:
    A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
    NeurIPS 2017 (arXiv:1711.00937): eq. 3 and Appendix A.1 (EMA updates).
    A. Razavi, A. van den Oord, O. Vinyals, "Generating Diverse High-Fidelity Images with
    VQ-VAE-2", NeurIPS 2019 (EMA codebook, decay 0.99).
    dm-haiku ``haiku/_src/nets/vqvae.py`` (``VectorQuantizerEMA``) and
    ``haiku/_src/moving_averages.py`` (zero-debiased EMA); Sonnet 2 ``sonnet/src/nets/vqvae.py``.
    P. Dhariwal et al., "Jukebox: A Generative Model for Music", 2020, section 3.3 (random
    restarts of dead codes).
    F. Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024 (FSQ).
    L. Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
    ICLR 2024 (MAGVIT-v2: LFQ and its entropy penalty).
    N. Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021 (residual VQ).
    C. Fifty et al., "Restructuring Vector Quantization with the Rotation Trick", ICLR 2025.
    D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
    vector-quantize-pytorch (lucidrains) ``FSQ`` and ``LFQ``: the peer implementations that
    ``tests/test_vq_extra.py`` compares with.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from genjax import _checks

__all__ = [
    "quantize",
    "nearest_code",
    "lookup",
    "codebook_loss",
    "commitment_loss",
    "vq_loss",
    "EmaCodebook",
    "ema_init",
    "ema_update",
    "restart_dead_codes",
    "codebook_usage",
    "perplexity",
    "fsq",
    "fsq_codes_to_indices",
    "fsq_indices_to_codes",
    "lfq",
    "lfq_indices_to_codes",
    "lfq_entropy_penalty",
    "residual_quantize",
    "quantizer_dropout",
    "residual_ema_update",
    "rotation_trick",
    "kmeans_plus_plus_init",
]

_HIGHEST = jax.lax.Precision.HIGHEST
_CANDIDATES = 8  # codes re-ranked by the direct distance in the exact nearest-code search


# --------------------------------------------------------------------------------------------
# Validation helpers (static, at trace time); the shared policy is genjax._checks'.
# --------------------------------------------------------------------------------------------


def _codebook(codebook: ArrayLike, name: str = "codebook") -> jax.Array:
    codebook = _checks.float_array(codebook, name)
    if codebook.ndim != 2 or codebook.shape[0] < 1 or codebook.shape[1] < 1:
        raise ValueError(f"`{name}` must have shape [K, D] with K, D >= 1, got shape {codebook.shape}")
    return codebook


def _check_latents(z: jax.Array, dim: int, name: str = "z") -> None:
    if z.ndim < 1 or z.shape[-1] != dim:
        raise ValueError(
            f"`{name}` must have shape [..., D] with D = {dim} (the codebook's dimension), got shape {z.shape}"
        )


def _indices(indices: ArrayLike) -> jax.Array:
    """An integer index array; Python/NumPy indices stay concrete (checkable) inside a jit trace."""
    with jax.ensure_compile_time_eval():
        return _checks.int_array(indices, "indices")


def _check_indices(indices: jax.Array, z: jax.Array, num_codes: int) -> None:
    if indices.shape != z.shape[:-1]:
        raise ValueError(
            f"`indices` must have the leading shape of `z`, {z.shape[:-1]}, got shape {indices.shape}"
        )
    _checks.int_in_range(indices, "indices", 0, num_codes, f" (the codebook has K = {num_codes} codes)")


def _check_state(state: EmaCodebook) -> tuple[int, int]:
    """An EmaCodebook whose fields have consistent shapes and floating statistics; returns (K, D)."""
    if not isinstance(state, EmaCodebook):
        raise TypeError(f"`state` must be an EmaCodebook (from ema_init), got {type(state).__name__}")
    k, d = _codebook(state.codebook, "state.codebook").shape
    for field, shape in (("hidden_count", (k,)), ("hidden_sum", (k, d)), ("cluster_size", (k,))):
        value = getattr(state, field)  # a JAX array, or a NumPy one restored from a checkpoint
        if not (hasattr(value, "dtype") and hasattr(value, "shape") and jnp.issubdtype(value.dtype, jnp.floating)):
            raise TypeError(f"`state.{field}` must be a floating array (from ema_init), got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")
        if value.shape != shape:
            raise ValueError(f"`state.{field}` must have shape {shape} for a [K, D] = [{k}, {d}] codebook, "
                             f"got {value.shape}")
    if jnp.shape(state.count) != ():
        raise ValueError(f"`state.count` must be a scalar, got shape {jnp.shape(state.count)}")
    return k, d


def _stat_dtype(dtype) -> jnp.dtype:
    """At least float32 (float64 stays float64)."""
    return _checks.compute_dtype(dtype)


def _psum_if(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


# --------------------------------------------------------------------------------------------
# Quantization.
# --------------------------------------------------------------------------------------------


def nearest_code(z: ArrayLike, codebook: ArrayLike, *, exact: bool = True) -> jax.Array:
    """Index of the nearest codebook vector (squared Euclidean distance) for every latent vector.

    ``k(z) = argmin_k ||z - e_k||^2``, found in two stages:

    1. one matrix product ranks the codes by ``||e_k - c||^2 - 2 (z - c).(e_k - c)`` (the
       distance up to the row constant ``||z - c||^2``), with ``c`` the codebook mean: centring
       removes a common offset of latents and codes, which would otherwise cancel catastrophically
       in ``||z||^2 - 2 z.e + ||e||^2`` (at an offset of 1000 in float32 more than a third of the
       assignments were wrong). Memory ``[N, K]`` for ``N`` latent vectors, never ``[N, K, D]``.
    2. with ``exact=True`` (the default) the ``min(K, 8)`` best codes of that ranking are
       re-ranked by the direct ``||z - e_k||^2`` (memory ``[N, 8, D]``).

    Guarantee (``exact=True``): the index returned is the argmin of the direct squared distances
    ``sum_d (z_d - e_kd)^2`` evaluated in the compute dtype (float32, or float64 under x64), ties
    going to the lowest index, whenever the nearest code is among the 8 best of stage 1, i.e.
    unless 8 other codes lie within stage 1's rounding error (relative ~1e-6 of
    ``||z - c||^2 + ||e - c||^2``) of it. In particular a latent equal to a code maps to that code
    (to the lowest index among duplicates). It then agrees with a float64 argmin except at
    near-ties closer than float32's rounding of the direct distances. ``exact=False`` returns
    stage 1's argmin alone (cheaper, approximate at near-ties).

    Args:
      z: latents, shape ``[..., D]``, real (integer and boolean inputs become float32).
      codebook: ``[K, D]``, real.
      exact: re-rank the best candidates by the direct distance (static Python bool).

    Returns:
      int32 indices in ``0..K-1``, shape ``[...]`` (``z.shape[:-1]``); ties go to the lowest index.

    Raises:
      ValueError: if ``codebook`` is not ``[K, D]`` or ``z``'s last axis is not ``D``.
      TypeError: for complex, string or None inputs, or a non-bool ``exact``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> codebook = jnp.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
      >>> vq.nearest_code(jnp.array([[0.9, 0.7], [-1.2, 0.1]]), codebook).tolist()
      [1, 2]
    """
    z, codebook, exact = _quantize_args(z, codebook, exact)
    return _nearest_kernel(z, codebook, exact=exact)


def _quantize_args(z, codebook, exact):
    z = _checks.float_array(z, "z")
    codebook = _codebook(codebook)
    _check_latents(z, codebook.shape[1])
    if not isinstance(exact, bool):
        raise TypeError(f"`exact` must be a Python bool, got {exact!r}")
    return z, codebook, exact


@_checks.kernel("exact")
def _nearest_kernel(z, codebook, *, exact):
    compute = _checks.compute_dtype(z, codebook)
    d = z.shape[-1]
    flat = jax.lax.stop_gradient(z).reshape(-1, d).astype(compute)  # [N, D]
    e = jax.lax.stop_gradient(codebook).astype(compute)  # [K, D]
    centre = jnp.mean(e, axis=0)  # [D]
    ec = e - centre
    # ||z - e||^2 - ||z - c||^2 in the centred coordinates: the row constant does not change the argmin.
    scores = jnp.sum(ec**2, axis=1)[None, :] - 2.0 * jnp.matmul(flat - centre, ec.T, precision=_HIGHEST)  # [N, K]
    if not exact:
        return jnp.argmin(scores, axis=1).astype(jnp.int32).reshape(z.shape[:-1])
    m = min(_CANDIDATES, e.shape[0])
    _, candidates = jax.lax.top_k(-scores, m)  # [N, m]; equal scores: the lower index first
    candidates = jnp.sort(candidates, axis=1)  # so that argmin's first minimum is the lowest index
    direct = jnp.sum((flat[:, None, :] - e[candidates]) ** 2, axis=-1)  # [N, m], uncentred: z - e is exact near e
    best = jnp.argmin(direct, axis=1)  # [N]
    idx = jnp.take_along_axis(candidates, best[:, None], axis=1)[:, 0]
    return idx.astype(jnp.int32).reshape(z.shape[:-1])


def lookup(codebook: ArrayLike, indices: ArrayLike) -> jax.Array:
    """The codebook vectors ``e_k`` of ``indices``: ``codebook[indices]``, differentiable in ``codebook``.

    Use it for the ``e_k`` argument of ``codebook_loss``/``commitment_loss``/``vq_loss``
    (``quantize``'s ``z_q`` carries no gradient to the codebook).

    Args:
      codebook: ``[K, D]``.
      indices: integer array of any shape ``[...]`` with entries in ``0..K-1``.

    Returns:
      ``[..., D]`` in the codebook's dtype (integer codebooks become float32). A concrete index out
      of range is a ``ValueError``; a traced one (inside ``jit``) gives NaN rows (``jnp.take`` with
      ``mode="fill"``), so that such a bug cannot go unnoticed.

    Raises:
      ValueError: ``codebook`` not ``[K, D]``, a concrete index outside ``0..K-1``.
      TypeError: non-integer ``indices``; complex, string or None ``codebook``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> vq.lookup(jnp.array([[0.0, 1.0], [2.0, 3.0]]), jnp.array([1, 1, 0])).tolist()
      [[2.0, 3.0], [2.0, 3.0], [0.0, 1.0]]
    """
    codebook = _codebook(codebook)
    indices = _indices(indices)
    k = codebook.shape[0]
    _checks.int_in_range(indices, "indices", 0, k, f" (the codebook has K = {k} codes)")
    return jnp.take(codebook, indices, axis=0, mode="fill", fill_value=jnp.nan)


def quantize(z: ArrayLike, codebook: ArrayLike, *, exact: bool = True) -> tuple[jax.Array, jax.Array]:
    """Vector-quantizes latents to their nearest codebook vectors, with the straight-through gradient.

    ``k_j = argmin_k ||z_j - e_k||^2`` and ``z_q = z + sg[e_k - z]``: the value of ``z_q`` is
    ``e_k`` (the quantized latent), and the gradient of anything computed from ``z_q`` flows to
    ``z`` unchanged (``d z_q / d z = I``), the straight-through estimator of the VQ-VAE paper.
    No gradient reaches ``codebook`` through ``z_q``: train the codebook with
    ``codebook_loss(z, lookup(codebook, indices))`` or with ``ema_update``. The indices are
    ``nearest_code(z, codebook, exact=exact)`` (see there for the search and its guarantee).

    Args:
      z: encoder outputs, shape ``[..., D]`` (e.g. ``[B, D]``, ``[B, L, D]``, ``[B, H, W, D]``,
        ``[B, T, H, W, D]``), real (integer and boolean inputs become float32).
      codebook: ``[K, D]``, real.
      exact: re-rank the best candidates by the direct distance (default; see ``nearest_code``).

    Returns:
      ``(z_q, indices)``: ``z_q`` of ``z``'s shape and (floating) dtype, ``indices`` int32 of shape
      ``z.shape[:-1]``.

    Raises:
      ValueError: if ``codebook`` is not ``[K, D]`` or ``z``'s last axis is not ``D``.
      TypeError: for complex, string or None inputs, or a non-bool ``exact``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import vq
      >>> codebook = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> z = jnp.array([[[0.2, 0.1], [0.8, 1.3]]])          # [B=1, L=2, D=2]
      >>> z_q, idx = vq.quantize(z, codebook)
      >>> idx.tolist(), z_q.tolist()
      ([[0, 1]], [[[0.0, 0.0], [1.0, 1.0]]])
      >>> jax.grad(lambda z: vq.quantize(z, codebook)[0].sum())(z).tolist()  # identity
      [[[1.0, 1.0], [1.0, 1.0]]]

    References:
      van den Oord et al. 2017, section 3.1 and eq. 1-3; Bengio et al. 2013 (straight-through).
    """
    z, codebook, exact = _quantize_args(z, codebook, exact)
    return _quantize_kernel(z, codebook, exact=exact)


@_checks.kernel("exact")
def _quantize_kernel(z, codebook, *, exact):
    indices = _nearest_kernel(z, codebook, exact=exact)
    e_k = jnp.take(jax.lax.stop_gradient(codebook), indices, axis=0).astype(z.dtype)
    z_q = z + jax.lax.stop_gradient(e_k - z)
    return z_q, indices


# --------------------------------------------------------------------------------------------
# Losses.
# --------------------------------------------------------------------------------------------


def _loss_pair(z, e_k):
    z = _checks.float_array(z, "z")
    e_k = _checks.float_array(e_k, "e_k")
    _checks.same_shape(z, e_k, "z", "e_k")
    return z, e_k, _checks.out_dtype(z, e_k)


def _mean_sq(a: jax.Array, b: jax.Array, out_dtype) -> jax.Array:
    if a.size == 0:
        return jnp.zeros((), out_dtype)
    compute = _stat_dtype(out_dtype)
    return jnp.mean((a.astype(compute) - b.astype(compute)) ** 2).astype(out_dtype)


@_checks.kernel("book_weight", "out_dtype")
def _loss_kernel(z, e_k, commit_weight, *, book_weight, out_dtype):
    """book_weight * mean (sg[z] - e)^2 + commit_weight * mean (z - sg[e])^2."""
    commit = _mean_sq(z, jax.lax.stop_gradient(e_k), out_dtype)
    book = _mean_sq(jax.lax.stop_gradient(z), e_k, out_dtype)
    total = jnp.asarray(commit_weight, out_dtype) * commit
    if book_weight:
        total = total + book
    return total.astype(out_dtype)


def codebook_loss(z: ArrayLike, e_k: ArrayLike) -> jax.Array:
    """The codebook (VQ) term: moves the chosen codes towards the encoder outputs, never the encoder.

    ``L_codebook = mean ||sg[z] - e_k||^2`` (mean over all entries, i.e. ``1/(N D) sum_j ||.||^2``),
    the second term of the VQ-VAE objective; its gradient with respect to ``z`` is zero.

    Args:
      z: encoder outputs ``[..., D]``.
      e_k: their codes, same shape; ``lookup(codebook, indices)`` so the gradient reaches the codebook.

    Returns:
      A scalar in the inputs' (promoted) dtype; 0 for an empty batch.

    Raises:
      ValueError: if the shapes differ. TypeError: for complex, string or None inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> float(vq.codebook_loss(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])))
      2.5

    References:
      van den Oord et al. 2017, eq. 3 (second term).
    """
    z, e_k, out = _loss_pair(z, e_k)
    return _loss_kernel(z, e_k, 0.0, book_weight=True, out_dtype=out)


def commitment_loss(z: ArrayLike, e_k: ArrayLike) -> jax.Array:
    """The commitment term: keeps the encoder outputs close to their codes, never moves the codebook.

    ``L_commit = mean ||z - sg[e_k]||^2`` (mean over all entries), the third term of the VQ-VAE
    objective (weighted by ``beta`` there); its gradient with respect to ``e_k`` is zero.

    Args:
      z: encoder outputs ``[..., D]``.
      e_k: their codes, same shape.

    Returns:
      A scalar in the inputs' (promoted) dtype; 0 for an empty batch.

    Raises:
      ValueError: if the shapes differ. TypeError: for complex, string or None inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> float(vq.commitment_loss(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])))
      2.5

    References:
      van den Oord et al. 2017, eq. 3 (third term).
    """
    z, e_k, out = _loss_pair(z, e_k)
    return _loss_kernel(z, e_k, 1.0, book_weight=False, out_dtype=out)


def vq_loss(z: ArrayLike, e_k: ArrayLike, beta: float | ArrayLike = 0.25) -> jax.Array:
    """The VQ-VAE latent loss: codebook term plus ``beta`` times the commitment term.

    ``L_vq = mean ||sg[z] - e_k||^2 + beta * mean ||z - sg[e_k]||^2``; add the reconstruction
    loss to get eq. 3 of the paper. With an EMA codebook use ``beta * commitment_loss`` instead.

    Args:
      z: encoder outputs ``[..., D]``.
      e_k: their codes, same shape (``lookup(codebook, indices)``).
      beta: the commitment weight, a finite number >= 0 (may be traced, e.g. a vmapped sweep; a
        traced value is used as given). 0.25 is the paper's value; it reports results robust for
        beta from 0.1 to 2.0.

    Returns:
      A scalar in the inputs' (promoted) dtype.

    Raises:
      ValueError: if the shapes differ or a Python ``beta`` is negative, infinite or NaN.
      TypeError: complex, string or None inputs; a string or bool ``beta``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> float(vq.vq_loss(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]]), beta=1.0))
      5.0

    References:
      van den Oord et al. 2017, eq. 3 and section 3.2 (beta = 0.25, robust from 0.1 to 2.0).
    """
    beta = _checks.number(beta, "beta", 0.0)
    z, e_k, out = _loss_pair(z, e_k)
    return _loss_kernel(z, e_k, beta, book_weight=True, out_dtype=out)


# --------------------------------------------------------------------------------------------
# The EMA codebook.
# --------------------------------------------------------------------------------------------


class EmaCodebook(NamedTuple):
    """The state of an EMA-updated codebook (a pytree; keep it in ``TrainState.extras``).

    The two moving averages are stored as dm-haiku's ``ExponentialMovingAverage`` stores them:
    the biased "hidden" averages that start at zero, and the number of updates ``count`` from
    which the zero-debiasing factor ``1 - decay^count`` is recomputed.

    Attributes:
      codebook: the current codes ``e``, ``[K, D]`` (what ``quantize`` uses).
      hidden_count: biased EMA of the per-code assignment counts ``n_i``, ``[K]``, zero at init.
      hidden_sum: biased EMA of the per-code sums of assigned latents, ``[K, D]``, zero at init
        (dm-haiku's ``ema_dw``, transposed).
      count: int32 scalar, the number of updates so far.
      cluster_size: the zero-debiased EMA count ``N_i`` after the last update (before Laplace
        smoothing), ``[K]``: how many latent vectors per batch code ``i`` has been attracting
        recently. Zero at init.
    """

    codebook: jax.Array  # [K, D]
    hidden_count: jax.Array  # [K]
    hidden_sum: jax.Array  # [K, D]
    count: jax.Array  # [] int32
    cluster_size: jax.Array  # [K]


def ema_init(codebook: ArrayLike) -> EmaCodebook:
    """The EMA state of an initial codebook: moving averages at zero, no updates yet.

    Args:
      codebook: the initial codes ``[K, D]`` (dm-haiku draws them from a uniform variance-scaling
        initializer; they only decide the first assignments, since the first ``ema_update`` sets
        every code from the data). Half precision is promoted to float32.

    Returns:
      An ``EmaCodebook``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> state = vq.ema_init(jnp.zeros((8, 3)))
      >>> state.codebook.shape, state.hidden_count.shape, int(state.count)
      ((8, 3), (8,), 0)
    """
    codebook = _codebook(codebook)
    dtype = _stat_dtype(codebook.dtype)
    k, _ = codebook.shape
    return EmaCodebook(
        codebook=codebook.astype(dtype),
        hidden_count=jnp.zeros((k,), dtype),
        hidden_sum=jnp.zeros(codebook.shape, dtype),
        count=jnp.zeros((), jnp.int32),
        cluster_size=jnp.zeros((k,), dtype),
    )


def _batch_statistics(z, indices, num_codes, dtype, axis_name):
    """Per-code counts ``[K]`` and sums ``[K, D]`` of the latents, summed over ``axis_name``.

    One-hot matrix products (as dm-haiku) rather than a scatter-add: deterministic on every
    backend, so that a resumed run reproduces its codebook bit for bit.
    """
    flat = z.reshape(-1, z.shape[-1]).astype(dtype)  # [N, D]
    one_hot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=dtype)  # [N, K]
    counts = jnp.sum(one_hot, axis=0)  # [K]
    sums = jnp.matmul(one_hot.T, flat, precision=_HIGHEST)  # [K, D]
    return _psum_if(counts, axis_name), _psum_if(sums, axis_name)


def ema_update(
    state: EmaCodebook,
    z: ArrayLike,
    indices: ArrayLike,
    decay: float | ArrayLike = 0.99,
    eps: float | ArrayLike = 1e-5,
    *,
    axis_name: str | None = None,
) -> EmaCodebook:
    """One EMA update of the codebook from a batch of latents and their assignments.

    With ``n_i`` the number of latents assigned to code ``i`` and ``s_i`` their sum (over the
    whole batch, and over all devices of ``axis_name``), ``gamma = decay``, ``t`` the update count
    after this update and ``K`` the number of codes, exactly as dm-haiku's and Sonnet's
    ``VectorQuantizerEMA`` (zero-debiased moving averages, then Laplace smoothing)::

        h_i <- gamma h_i + (1 - gamma) n_i             hidden (biased) EMA of counts, h_0 = 0
        H_i <- gamma H_i + (1 - gamma) s_i             hidden EMA of sums, H_0 = 0
        N_i  = h_i / (1 - gamma^t)                      zero-debiased
        m_i  = H_i / (1 - gamma^t)
        n    = sum_i N_i
        N~_i = (N_i + eps) / (n + K eps) * n            Laplace smoothing
        e_i  = m_i / N~_i

    Step by step this gives the codebooks of ``hk.nets.VectorQuantizerEMA`` (up to float
    rounding). A code that was never used has ``m_i = 0`` and so moves to the origin, as in
    dm-haiku. The one deviation is where dm-haiku divides 0 by 0 (no latent at all so far, or
    ``eps = 0`` with an unused code): there the code keeps its previous value instead of NaN.

    Args:
      state: the ``EmaCodebook``.
      z: the encoder outputs ``[..., D]`` the assignments were made for (no gradient flows).
      indices: their codes, int of shape ``z.shape[:-1]``, normally from
        ``quantize(z, state.codebook)``. A concrete index outside ``0..K-1`` is a ``ValueError``;
        a traced one (inside ``jit``) cannot be checked and is ignored (it counts for no code).
      decay: ``gamma`` in ``[0, 1)``; 0.99 as in the paper's Appendix A.1 and VQ-VAE-2. A traced
        value is clipped into ``[0, 1 - 2^-24]`` (so the debiasing never divides by zero).
      eps: the Laplace-smoothing ``epsilon >= 0``; 1e-5 as in dm-haiku and Sonnet. ``eps = 0``
        (no smoothing) is allowed: the first update then gives the exact cluster means. A traced
        value is clipped at 0.
      axis_name: the ``pmap`` axis over which to sum the batch statistics, or None.

    Returns:
      The updated ``EmaCodebook``; its statistics keep the state's dtypes (float32 from
      ``ema_init``, also for bfloat16/float16 latents, which are accumulated in float32).

    Raises:
      ValueError: mismatched shapes, a concrete index outside ``0..K-1``, a Python ``decay``
        outside ``[0, 1)`` or ``eps`` negative (NaN and infinities included).
      TypeError: complex/string/None ``z``, non-integer ``indices``, a string or bool ``decay`` or
        ``eps``, a ``state`` that is not an ``EmaCodebook``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> state = vq.ema_init(jnp.array([[0.0], [5.0]]))
      >>> z = jnp.array([[1.0], [3.0], [6.0]])
      >>> _, idx = vq.quantize(z, state.codebook)
      >>> state = vq.ema_update(state, z, idx, eps=0.0)   # first update: the cluster means
      >>> idx.tolist(), state.codebook.tolist()
      ([0, 1, 1], [[1.0], [4.5]])

    References:
      van den Oord et al. 2017, Appendix A.1, eq. 6-8; Kingma & Ba 2015, section 3 (debiasing).
    """
    k, d = _check_state(state)
    decay = _checks.number(decay, "decay", 0.0, 1.0, high_open=True)
    eps = _checks.number(eps, "eps", 0.0)
    z = _checks.float_array(z, "z")
    indices = _indices(indices)
    _check_latents(z, d)
    _check_indices(indices, z, k)

    return _ema_kernel(state, z, indices, decay, eps, axis_name=axis_name)


_MAX_DECAY = 1.0 - 2.0**-24  # the largest float32 below 1


@_checks.kernel("axis_name")
def _ema_kernel(state, z, indices, decay, eps, *, axis_name):
    k = state.codebook.shape[0]
    dtype = _stat_dtype(state.hidden_count.dtype)
    z = jax.lax.stop_gradient(z)
    counts, sums = _batch_statistics(z, indices, k, dtype, axis_name)

    decay = jnp.clip(jnp.asarray(decay, dtype), 0.0, _MAX_DECAY)  # a no-op for checked Python numbers
    eps = jnp.maximum(jnp.asarray(eps, dtype), 0.0)
    t = state.count + 1
    hidden_count = state.hidden_count.astype(dtype) * decay + counts * (1 - decay)
    hidden_sum = state.hidden_sum.astype(dtype) * decay + sums * (1 - decay)
    debias = 1.0 - jnp.power(decay, t)
    cluster_size = hidden_count / debias  # N_i
    dw = hidden_sum / debias  # m_i
    n = jnp.sum(cluster_size)
    smoothed = (cluster_size + eps) / (n + k * eps) * n  # N~_i
    ok = smoothed > 0
    codebook = jnp.where(ok[:, None], dw / jnp.where(ok, smoothed, 1.0)[:, None], state.codebook)
    return EmaCodebook(
        codebook=codebook.astype(state.codebook.dtype),
        hidden_count=hidden_count.astype(state.hidden_count.dtype),
        hidden_sum=hidden_sum.astype(state.hidden_sum.dtype),
        count=t.astype(jnp.int32),
        cluster_size=cluster_size.astype(state.cluster_size.dtype),
    )


def restart_dead_codes(
    key: jax.Array,
    state: EmaCodebook,
    z: ArrayLike,
    threshold: float | ArrayLike = 1.0,
    *,
    axis_name: str | None = None,
) -> EmaCodebook:
    """Moves every dead code (EMA usage below ``threshold``) onto a random encoder output.

    A code ``i`` is dead when its zero-debiased EMA count ``state.cluster_size[i]`` (latent
    vectors per batch) is below ``threshold``. It is replaced by a latent vector drawn uniformly
    from ``z`` (from all devices' ``z`` under ``axis_name``, the same draw on every device), and
    its moving averages are zeroed, so the next ``ema_update`` sets it to the mean of the latents
    it then attracts. Live codes are untouched. Optional: ``ema_update`` alone is dm-haiku's
    algorithm; restarts are the remedy for codebook collapse of Dhariwal et al. (2020).

    Call it after ``ema_update`` (which refreshes ``cluster_size``), e.g. every step with the
    step's key. Before the first update every ``cluster_size`` is 0, so every code is dead.

    Args:
      key: a PRNG key (the same on all devices under ``pmap``).
      state: the ``EmaCodebook``.
      z: encoder outputs ``[..., D]`` with at least one vector.
      threshold: usage below which a code is restarted, a finite number ``>= 0`` (``> 0`` to have
        any effect); a traced value is used as given.
      axis_name: the ``pmap`` axis to gather candidate latents from, or None.

    Returns:
      The updated ``EmaCodebook``.

    Raises:
      ValueError: mismatched shapes, an empty ``z``, a Python ``threshold`` negative, infinite or
        NaN.
      TypeError: ``key`` None or not a PRNG key, ``state`` not an ``EmaCodebook``, a string or
        bool ``threshold``, complex/string/None ``z``.

    References:
      P. Dhariwal et al., "Jukebox: A Generative Model for Music", 2020, section 3.3.
    """
    key = _checks.key(key)
    k, d = _check_state(state)
    threshold = _checks.number(threshold, "threshold", 0.0)
    z = _checks.float_array(z, "z")
    _check_latents(z, d)
    if z.size == 0:
        raise ValueError(f"`z` must hold at least one latent vector to restart codes from, got shape {z.shape}")
    return _restart_kernel(key, state, z, threshold, axis_name=axis_name)


@_checks.kernel("axis_name")
def _restart_kernel(key, state, z, threshold, *, axis_name):
    k, d = state.codebook.shape
    flat = jax.lax.stop_gradient(z).reshape(-1, d).astype(state.codebook.dtype)  # [N, D]
    if axis_name is not None:
        flat = jax.lax.all_gather(flat, axis_name, tiled=True)  # [devices * N, D], device order
    picks = jax.random.randint(key, (k,), 0, flat.shape[0])
    dead = state.cluster_size < jnp.asarray(threshold, state.cluster_size.dtype)  # [K]
    zero = jnp.zeros((), state.hidden_count.dtype)
    return state._replace(
        codebook=jnp.where(dead[:, None], flat[picks], state.codebook),
        hidden_count=jnp.where(dead, zero, state.hidden_count),
        hidden_sum=jnp.where(dead[:, None], zero, state.hidden_sum),
        cluster_size=jnp.where(dead, zero, state.cluster_size),
    )


# --------------------------------------------------------------------------------------------
# Diagnostics.
# --------------------------------------------------------------------------------------------


def codebook_usage(indices: ArrayLike, num_codes: int, *, axis_name: str | None = None) -> jax.Array:
    """How many times each code is used: the histogram of ``indices`` over ``0..num_codes-1``.

    Args:
      indices: int array of any shape (all entries are counted), entries in ``0..K-1``. A
        concrete entry out of range is a ``ValueError``; a traced one is not counted.
      num_codes: ``K``, a static positive Python int.
      axis_name: the ``pmap`` axis to sum the counts over, or None.

    Returns:
      int32 counts ``[K]``; ``jnp.sum(counts > 0)`` is the number of codes in use.

    Raises:
      TypeError: non-integer ``indices``; a ``num_codes`` that is not a Python int (2.5, True).
      ValueError: ``num_codes < 1``; a concrete index outside ``0..K-1``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> vq.codebook_usage(jnp.array([[0, 2], [2, 2]]), 4).tolist()
      [1, 0, 3, 0]
    """
    return _usage_kernel(*_diagnostic_args(indices, num_codes), axis_name=axis_name)


def _diagnostic_args(indices, num_codes):
    indices = _indices(indices)
    num_codes = _checks.positive_int(num_codes, "num_codes")
    _checks.int_in_range(indices, "indices", 0, num_codes, f" (num_codes = {num_codes})")
    return indices, num_codes


@_checks.kernel("num_codes", "axis_name")
def _usage_kernel(indices, num_codes, *, axis_name):
    counts = jnp.sum(jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=jnp.int32), axis=0)
    return _psum_if(counts, axis_name)


def perplexity(indices: ArrayLike, num_codes: int, *, axis_name: str | None = None) -> jax.Array:
    """Perplexity of the code distribution: ``exp(H(p))`` with ``p`` the codes' empirical frequencies.

    ``p_i = n_i / sum_j n_j`` over all entries of ``indices``; ``exp(-sum_i p_i log p_i)`` with
    ``0 log 0 = 0`` is the effective number of codes in use: 1 when one code takes everything,
    ``K`` when all are used equally. dm-haiku computes the same from the mean one-hot encoding
    (with ``log(p + 1e-10)``). An empty batch gives 1.

    Args:
      indices: int array of any shape, entries in ``0..K-1`` (a concrete entry out of range is a
        ``ValueError``; a traced one is not counted).
      num_codes: ``K``, a static positive Python int.
      axis_name: the ``pmap`` axis over which to pool the counts, or None.

    Returns:
      A float32 scalar in ``[1, K]`` (clipped there against float rounding).

    Raises:
      TypeError: non-integer ``indices``; a ``num_codes`` that is not a Python int (2.5, True).
      ValueError: ``num_codes < 1``; a concrete index outside ``0..K-1``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> float(vq.perplexity(jnp.array([0, 1, 2, 3]), 8)), float(vq.perplexity(jnp.array([5, 5]), 8))
      (4.0, 1.0)
    """
    return _perplexity_kernel(*_diagnostic_args(indices, num_codes), axis_name=axis_name)


@_checks.kernel("num_codes", "axis_name")
def _perplexity_kernel(indices, num_codes, *, axis_name):
    counts = _usage_kernel(indices, num_codes=num_codes, axis_name=axis_name).astype(jnp.float32)
    total = jnp.sum(counts)
    p = counts / jnp.maximum(total, 1.0)
    nz = p > 0
    sp = jnp.where(nz, p, 1.0)
    entropy = -jnp.sum(jnp.where(nz, sp * jnp.log(sp), 0.0))
    return jnp.clip(jnp.exp(entropy), 1.0, float(num_codes))


# --------------------------------------------------------------------------------------------
# Finite scalar quantization (FSQ).
# --------------------------------------------------------------------------------------------

_FSQ_EPS = 1e-3  # widens the bound by 0.1 %, as vector-quantize-pytorch's FSQ.bound


def _fsq_levels(levels) -> tuple[int, ...]:
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise TypeError(f"`levels` must be a tuple of Python ints (levels per dimension), got {levels!r}")
    levels = tuple(levels)
    if not levels:
        raise ValueError("`levels` must name at least one dimension, got ()")
    for level in levels:
        _checks.integer(level, "levels")  # TypeError for 2.5, True, '3'
        if int(level) < 3:
            raise ValueError(
                f"`levels` must have entries >= 3, got {levels!r}: with 2 levels the even-level "
                "half-offset leaves one rounding boundary at z = -3.8 (use `lfq` for binary codes)"
            )
    levels = tuple(int(level) for level in levels)
    size = 1
    for level in levels:
        size *= level
    if size > 2**31 - 1:
        raise ValueError(f"`levels` give {size} codes, more than int32 indices hold (2^31 - 1), got {levels!r}")
    return levels


def _fsq_constants(levels, dtype):
    lv = jnp.asarray(levels, dtype)  # [d]
    half_width = jnp.asarray([level // 2 for level in levels], dtype)  # [d]
    basis = [1]
    for level in levels[:-1]:
        basis.append(basis[-1] * level)
    return lv, half_width, jnp.asarray(basis, jnp.int32)


def _check_fsq_codes(z, levels, name):
    if z.ndim < 1 or z.shape[-1] != len(levels):
        raise ValueError(f"`{name}` must have shape [..., d] with d = len(levels) = {len(levels)}, got shape {z.shape}")


def fsq(z: ArrayLike, levels) -> tuple[jax.Array, jax.Array]:
    """Finite scalar quantization: each dimension bounded and rounded to its own few levels.

    For dimension ``i`` with ``L_i`` levels, ``h_i = (L_i - 1)(1 + 1e-3) / 2``, the half-offset
    ``o_i = 0.5`` for even ``L_i`` (0 for odd) and ``s_i = atanh(o_i / h_i)``::

        bound(z)_i = tanh(z_i + s_i) h_i - o_i                      in (-h_i - o_i, h_i - o_i)
        z_q_i      = round_ste(bound(z)_i) / floor(L_i / 2)

    ``round_ste(x) = x + sg[round(x) - x]`` (straight-through: the gradient is that of
    ``bound``). Odd ``L`` gives the symmetric grid ``{-1, ..., 1}`` in steps of ``2 / (L - 1)``;
    even ``L`` the grid ``{-1, -1 + 2/L, ..., 1 - 2/L}`` (the half-offset shifts the bound so that
    ``L`` integers are reachable and ``bound(0) = 0``). The codebook is implicit: all
    ``prod(L_i)`` grid points, ``fsq_indices_to_codes(jnp.arange(prod(levels)), levels)``.
    Indices are mixed-radix with the first dimension least significant (``fsq_codes_to_indices``).
    Rounding is half to even, as ``torch.round``.

    The bound is vector-quantize-pytorch's ``FSQ.bound`` (``atanh`` and ``1 + eps``): the paper's
    listing (Appendix A.1) writes ``tan`` where the inverse of ``tanh`` makes ``bound(0) = 0``,
    and ``1 - eps``; the two agree except within ~1e-3 of a rounding boundary.

    Args:
      z: latents ``[..., d]``, real; half precision is computed in float32.
      levels: the number of levels per dimension, a tuple of ``d`` Python ints ``>= 3`` (the
        paper's choices: ``(8, 5, 5, 5)`` for 1000 codes, ``(8, 8, 8, 6, 5)`` for 15360).

    Returns:
      ``(z_q, indices)``: the codes ``[..., d]`` in ``z``'s dtype (straight-through) and their
      int32 indices ``[...]`` in ``0..prod(levels)-1``.

    Raises:
      ValueError: ``z``'s last axis is not ``len(levels)``; a level below 3; more than
        ``2^31 - 1`` codes.
      TypeError: non-int levels; complex, string or None ``z``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> z_q, idx = vq.fsq(jnp.array([[0.0, 0.0], [5.0, -5.0], [-0.6, 0.6]]), (3, 4))
      >>> z_q.tolist(), idx.tolist()
      ([[0.0, 0.0], [1.0, -1.0], [-1.0, 0.5]], [7, 2, 9])

    References:
      F. Mentzer, D. Minnen, E. Agustsson, M. Tschannen, "Finite Scalar Quantization: VQ-VAE Made
      Simple", ICLR 2024 (arXiv:2309.15505), section 3 and Appendix A.1;
      vector-quantize-pytorch ``finite_scalar_quantization.py`` (``FSQ``).
    """
    levels = _fsq_levels(levels)
    z = _checks.float_array(z, "z")
    _check_fsq_codes(z, levels, "z")
    return _fsq_kernel(z, levels=levels)


@_checks.kernel("levels")
def _fsq_kernel(z, *, levels):
    compute = _checks.compute_dtype(z)
    lv, half_width, basis = _fsq_constants(levels, compute)
    x = z.astype(compute)
    half_l = (lv - 1) * (1 + _FSQ_EPS) / 2
    offset = jnp.where(lv % 2 == 0, 0.5, 0.0).astype(compute)
    shift = jnp.arctanh(offset / half_l)
    bounded = jnp.tanh(x + shift) * half_l - offset
    rounded = jnp.round(bounded)
    digits = (rounded + half_width).astype(jnp.int32)  # 0..L-1
    indices = jnp.sum(digits * basis, axis=-1).astype(jnp.int32)
    z_q = (bounded + jax.lax.stop_gradient(rounded - bounded)) / half_width
    return z_q.astype(z.dtype), indices


def fsq_codes_to_indices(codes: ArrayLike, levels) -> jax.Array:
    """Mixed-radix index of FSQ codes: ``sum_i digit_i prod_{j < i} L_j``, ``digit_i = c_i floor(L_i/2) + floor(L_i/2)``.

    The first dimension is the least significant digit (as the paper's listing and
    vector-quantize-pytorch). Codes off the grid are rounded to the nearest level in each
    dimension (and clipped to it).

    Args:
      codes: ``[..., d]`` codes from ``fsq`` (or ``fsq_indices_to_codes``), real.
      levels: the tuple of ``d`` levels the codes were made with.

    Returns:
      int32 indices ``[...]`` in ``0..prod(levels)-1``.

    Raises:
      ValueError, TypeError: as ``fsq``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> vq.fsq_codes_to_indices(jnp.array([[0.0, 0.0], [-1.0, 0.5]]), (3, 4)).tolist()
      [7, 9]

    References:
      Mentzer et al. 2024, Appendix A.1 (``codes_to_indexes``).
    """
    levels = _fsq_levels(levels)
    codes = _checks.float_array(codes, "codes")
    _check_fsq_codes(codes, levels, "codes")
    return _fsq_to_indices_kernel(codes, levels=levels)


@_checks.kernel("levels")
def _fsq_to_indices_kernel(codes, *, levels):
    compute = _checks.compute_dtype(codes)
    lv, half_width, basis = _fsq_constants(levels, compute)
    digits = jnp.clip(jnp.round(codes.astype(compute) * half_width + half_width), 0, lv - 1).astype(jnp.int32)
    return jnp.sum(digits * basis, axis=-1).astype(jnp.int32)


def fsq_indices_to_codes(indices: ArrayLike, levels) -> jax.Array:
    """The FSQ codes of mixed-radix indices (the inverse of ``fsq_codes_to_indices``).

    ``digit_i = (index // prod_{j < i} L_j) mod L_i`` and ``c_i = (digit_i - floor(L_i/2)) /
    floor(L_i/2)``. ``fsq_indices_to_codes(jnp.arange(prod(levels)), levels)`` is the implicit
    codebook ``[prod(levels), d]``.

    Args:
      indices: int array of any shape, entries in ``0..prod(levels)-1`` (a concrete entry out of
        range is a ``ValueError``; a traced one wraps around).
      levels: the tuple of levels.

    Returns:
      float32 codes ``[..., d]``.

    Raises:
      ValueError: bad ``levels``, a concrete index out of range.
      TypeError: non-integer ``indices``, non-int levels.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> vq.fsq_indices_to_codes(jnp.array([7, 9]), (3, 4)).tolist()
      [[0.0, 0.0], [-1.0, 0.5]]
      >>> vq.fsq_indices_to_codes(jnp.arange(12), (3, 4)).shape   # the implicit codebook
      (12, 2)

    References:
      Mentzer et al. 2024, Appendix A.1 (``indexes_to_codes``).
    """
    levels = _fsq_levels(levels)
    indices = _indices(indices)
    size = 1
    for level in levels:
        size *= level
    _checks.int_in_range(indices, "indices", 0, size, f" (levels {levels} give {size} codes)")
    return _fsq_to_codes_kernel(indices, levels=levels)


@_checks.kernel("levels")
def _fsq_to_codes_kernel(indices, *, levels):
    lv, half_width, basis = _fsq_constants(levels, jnp.float32)
    digits = (indices[..., None].astype(jnp.int32) // basis) % lv.astype(jnp.int32)
    return (digits.astype(jnp.float32) - half_width) / half_width


# --------------------------------------------------------------------------------------------
# Lookup-free quantization (LFQ).
# --------------------------------------------------------------------------------------------

_LFQ_MAX_DIM = 31  # int32 indices


def _check_lfq_latents(z, name="z"):
    if z.ndim < 1 or not 1 <= z.shape[-1] <= _LFQ_MAX_DIM:
        raise ValueError(f"`{name}` must have shape [..., d] with 1 <= d <= {_LFQ_MAX_DIM} (int32 indices), "
                         f"got shape {z.shape}")


def lfq(z: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Lookup-free quantization: the sign of every dimension, with the straight-through gradient.

    ``c_i = +1`` if ``z_i > 0`` else ``-1`` (zero goes to -1, as vector-quantize-pytorch), the
    codebook is ``{-1, +1}^d`` (``2^d`` codes, never stored), ``z_q = z + sg[c - z]`` and the
    index is the paper's eq. 3, ``sum_i 2^i [z_i > 0]`` for ``i = 0..d-1``: **the first dimension
    is the least significant bit**. (vector-quantize-pytorch's ``LFQ`` makes the first dimension
    the most significant bit; its index is this one with the ``d`` bits reversed.)

    Args:
      z: latents ``[..., d]`` with ``1 <= d <= 31``, real.

    Returns:
      ``(z_q, indices)``: the codes ``[..., d]`` in ``z``'s dtype and int32 indices ``[...]``.

    Raises:
      ValueError: ``d`` outside ``1..31`` or ``z`` a scalar.
      TypeError: complex, string or None ``z``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> z_q, idx = vq.lfq(jnp.array([[0.3, -2.0, 0.1], [-1.0, -1.0, 0.0]]))
      >>> z_q.tolist(), idx.tolist()
      ([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]], [5, 0])

    References:
      L. Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation"
      (MAGVIT-v2), ICLR 2024 (arXiv:2310.05737), section 3.1, eq. 3;
      vector-quantize-pytorch ``lookup_free_quantization.py`` (``LFQ``).
    """
    z = _checks.float_array(z, "z")
    _check_lfq_latents(z)
    return _lfq_kernel(z)


@jax.jit
def _lfq_kernel(z):
    positive = z > 0
    codes = jnp.where(positive, 1.0, -1.0).astype(z.dtype)
    weights = jnp.left_shift(jnp.int32(1), jnp.arange(z.shape[-1], dtype=jnp.int32))  # 2^i
    indices = jnp.sum(jnp.where(positive, weights, 0), axis=-1).astype(jnp.int32)
    return z + jax.lax.stop_gradient(codes - z), indices


def lfq_indices_to_codes(indices: ArrayLike, dim: int) -> jax.Array:
    """The LFQ codes in ``{-1, +1}^dim`` of indices (bit ``i`` of the index is dimension ``i``).

    Args:
      indices: int array of any shape, entries in ``0..2^dim-1`` (concrete ones are checked).
      dim: ``d``, a Python int in ``1..31``.

    Returns:
      float32 codes ``[..., dim]``.

    Raises:
      ValueError: ``dim`` outside ``1..31``, a concrete index out of range.
      TypeError: non-integer ``indices``, a non-int ``dim``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> vq.lfq_indices_to_codes(jnp.array([5, 0]), 3).tolist()
      [[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]]

    References:
      Yu et al. 2024 (MAGVIT-v2), eq. 3.
    """
    dim = _checks.integer(dim, "dim", 1, _LFQ_MAX_DIM)
    indices = _indices(indices)
    _checks.int_in_range(indices, "indices", 0, 2**dim, f" (dim = {dim} gives 2^{dim} codes)")
    return _lfq_codes_kernel(indices, dim=dim)


@_checks.kernel("dim")
def _lfq_codes_kernel(indices, *, dim):
    bits = jnp.right_shift(indices[..., None].astype(jnp.int32), jnp.arange(dim, dtype=jnp.int32)) & 1
    return jnp.where(bits == 1, 1.0, -1.0).astype(jnp.float32)


_BATCH_ENTROPY = ("exact", "marginal")


def lfq_entropy_penalty(
    z: ArrayLike,
    temperature: float | ArrayLike = 0.01,
    diversity_weight: float | ArrayLike = 1.0,
    *,
    batch_entropy: str = "exact",
    chunk_size: int = 4096,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """LFQ's entropy penalty: mean per-sample entropy minus the entropy of the batch's average code distribution.

    The soft assignment of a latent ``z`` (one ``[d]`` vector) over the ``2^d`` codes
    ``c in {-1, +1}^d`` is ``q(c | z) = softmax_c(-||z - c||^2 / T)``; since ``||c||^2 = d`` for
    every code this is ``softmax_c(2 z.c / T)`` (vector-quantize-pytorch's
    ``softmax(-distance * inv_temperature)`` with ``distance = -2 z.c`` and ``T = 1 /
    inv_temperature``). Over the ``N`` latents of the batch (all leading positions)::

        penalty = mean_n H(q(. | z_n)) - gamma H(mean_n q(. | z_n))

    (MAGVIT-v2's ``E[H(q(z))] - H[E(q(z))]`` at ``gamma = diversity_weight = 1``, nats).

    How each part is computed, without an ``[N, 2^d]`` array:

    - **per-sample entropy: exact, factorised.** ``2 z.c / T = sum_i 2 z_i c_i / T``, so
      ``q(c | z) = prod_i q_i(c_i | z_i)`` with independent bits, ``q_i(+1) = sigmoid(4 z_i / T)``,
      and ``H(q(. | z)) = sum_i H_b(sigmoid(4 z_i / T))`` (memory ``[N, d]``).
    - **batch entropy, ``batch_entropy="exact"``: exact, chunked over the codes.** The average
      ``mean_n q(c | z_n)`` does not factorise; ``log q(c | z_n) = sum_i log q_i(c_i | z_ni)`` is
      one ``[N, 2d] x [2d, C]`` product per chunk of ``C = chunk_size`` codes, reduced by a
      log-sum-exp over the batch, and the chunk is recomputed in the backward pass
      (``jax.checkpoint``): memory ``[N, C]``, compute ``O(N 2^d d)``. It equals the brute-force
      softmax over all ``2^d`` codes (vector-quantize-pytorch materialises ``[N, 2^d]``), up to
      its ``log(max(p, 1e-5))`` clamp, which this function does not apply (``0 log 0 = 0``).
      Practical up to ``d`` around 20; ``d <= 30``.
    - **``batch_entropy="marginal"``: an upper bound, factorised.** ``sum_i H_b(mean_n
      q_i(+1 | z_ni))``, the entropy of the product of the average's marginals: at least the
      exact batch entropy (subadditivity), equal when the batch's bits are independent (always
      for ``d = 1``). Memory ``[N, d]``, any ``d``; the penalty is then a lower bound.

    Everything is computed in float32 (at least), also for bfloat16/float16 latents.

    Args:
      z: latents ``[..., d]`` (the values before ``lfq``'s sign, e.g. an encoder's output), with
        at least one vector.
      temperature: ``T > 0``; 0.01 is vector-quantize-pytorch's default (``inv_temperature =
        100``). A traced value is used as given.
      diversity_weight: ``gamma >= 0``, the weight of the batch entropy (vector-quantize-pytorch's
        ``diversity_gamma``, default 1).
      batch_entropy: ``"exact"`` or ``"marginal"`` (above).
      chunk_size: codes per chunk for ``"exact"``, a positive Python int.
      axis_name: the ``pmap`` axis over which the batch average is taken (all devices' latents
        form the batch), or None.

    Returns:
      ``(penalty, per_sample_entropy, batch_entropy)``: float32 scalars in nats
      (``per_sample_entropy`` is the mean over this device's latents, as the
      vector-quantize-pytorch ``LossBreakdown`` fields).

    Raises:
      ValueError: ``d`` outside ``1..31`` (``1..30`` for ``"exact"``), an empty ``z``, a Python
        ``temperature <= 0`` or ``diversity_weight < 0``, an unknown ``batch_entropy``.
      TypeError: complex/string/None ``z``, a string or bool number, a non-int ``chunk_size``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> z = jnp.array([[2.0, -2.0], [-2.0, 2.0]])       # two confident, different codes
      >>> penalty, per_sample, batch = vq.lfq_entropy_penalty(z, temperature=0.1)
      >>> round(float(per_sample), 4), round(float(batch), 4)   # log 2: two of the four codes
      (0.0, 0.6931)
      >>> round(float(vq.lfq_entropy_penalty(z, 0.1, batch_entropy="marginal")[2]), 4)  # 2 log 2
      1.3863

    References:
      Yu et al. 2024 (MAGVIT-v2), section 3.1 (the entropy penalty, after Jansen et al. 2020);
      vector-quantize-pytorch ``LFQ.forward`` (``per_sample_entropy``, ``codebook_entropy``).
    """
    z = _checks.float_array(z, "z")
    _check_lfq_latents(z)
    if z.size == 0:
        raise ValueError(f"`z` must hold at least one latent vector (the entropies are batch means), got shape {z.shape}")
    temperature = _checks.number(temperature, "temperature", 0.0, low_open=True)
    diversity_weight = _checks.number(diversity_weight, "diversity_weight", 0.0)
    batch_entropy = _checks.choice(batch_entropy, "batch_entropy", _BATCH_ENTROPY)
    chunk_size = _checks.positive_int(chunk_size, "chunk_size")
    if batch_entropy == "exact" and z.shape[-1] > 30:
        raise ValueError(f"`z` has d = {z.shape[-1]} dimensions: batch_entropy='exact' enumerates 2^d codes and "
                         "takes d <= 30 (use batch_entropy='marginal')")
    return _lfq_entropy_kernel(z, temperature, diversity_weight, batch_entropy=batch_entropy,
                               chunk_size=chunk_size, axis_name=axis_name)


def _binary_entropy_from_logits(a):
    """H_b(sigmoid(a)) = sigmoid(a) softplus(-a) + sigmoid(-a) softplus(a); finite at |a| = 1e30."""
    return jax.nn.sigmoid(a) * jax.nn.softplus(-a) + jax.nn.sigmoid(-a) * jax.nn.softplus(a)


@_checks.kernel("batch_entropy", "chunk_size", "axis_name")
def _lfq_entropy_kernel(z, temperature, diversity_weight, *, batch_entropy, chunk_size, axis_name):
    compute = _checks.compute_dtype(z)
    d = z.shape[-1]
    x = z.reshape(-1, d).astype(compute)  # [N, D]
    a = 4.0 * x / jnp.asarray(temperature, compute)  # [N, D]: per-bit logits of c_i = +1
    n_local = jnp.asarray(x.shape[0], compute)
    n_total = _psum_if(n_local, axis_name)
    per_sample = jnp.sum(_binary_entropy_from_logits(a)) / n_local
    if batch_entropy == "marginal":
        p_plus = _psum_if(jnp.sum(jax.nn.sigmoid(a), axis=0), axis_name) / n_total  # [D]
        batch = jnp.sum(_binary_entropy_from_probs(p_plus))
    else:
        batch = _exact_batch_entropy(a, n_total, chunk_size, axis_name)
    penalty = per_sample - jnp.asarray(diversity_weight, compute) * batch
    return penalty.astype(jnp.float32), per_sample.astype(jnp.float32), batch.astype(jnp.float32)


def _binary_entropy_from_probs(p):
    return -(_xlogx(p) + _xlogx(1.0 - p))


def _xlogx(p):
    """p log p with 0 log 0 = 0 (the double where: log never sees 0, nor its gradient)."""
    pos = p > 0
    safe = jnp.where(pos, p, 1.0)
    return jnp.where(pos, safe * jnp.log(safe), 0.0)


def _exact_batch_entropy(a, n_total, chunk_size, axis_name):
    """-sum_c pbar_c log pbar_c over all 2^d codes, pbar_c = mean_n prod_i q_i(c_i | z_ni), in chunks of codes."""
    d = a.shape[-1]
    num_codes = 2**d
    size = min(chunk_size, num_codes)
    num_chunks = -(-num_codes // size)
    logq = jnp.concatenate([jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)], axis=1)  # [N, 2D]: bit 1, bit 0
    shifts = jnp.arange(d, dtype=jnp.int32)
    log_n = jnp.log(n_total)

    @jax.checkpoint
    def chunk(start):
        codes = start + jnp.arange(size, dtype=jnp.int32)  # [C]
        bits = (jnp.right_shift(codes[:, None], shifts) & 1).astype(a.dtype)  # [C, D]
        selector = jnp.concatenate([bits, 1.0 - bits], axis=1)  # [C, 2D]
        log_q = jnp.matmul(logq, selector.T, precision=_HIGHEST)  # [N, C]: log q(c | z_n), sums of terms <= 0
        top = jax.lax.stop_gradient(jnp.max(log_q, axis=0))  # [C]
        if axis_name is not None:
            top = jax.lax.pmax(top, axis_name)
        total = _psum_if(jnp.sum(jnp.exp(log_q - top), axis=0), axis_name)  # [C], >= 1 somewhere
        log_pbar = top + jnp.log(total) - log_n  # [C]
        pbar = jnp.exp(log_pbar)
        terms = jnp.where(codes < num_codes, pbar * log_pbar, 0.0)
        return -jnp.sum(terms)

    starts = jnp.arange(num_chunks, dtype=jnp.int32) * size
    if num_chunks == 1:
        return chunk(starts[0])
    return jnp.sum(jax.lax.map(chunk, starts))


# --------------------------------------------------------------------------------------------
# Residual VQ (SoundStream).
# --------------------------------------------------------------------------------------------


def _codebooks(codebooks: ArrayLike) -> jax.Array:
    codebooks = _checks.float_array(codebooks, "codebooks")
    if codebooks.ndim != 3 or min(codebooks.shape) < 1:
        raise ValueError(f"`codebooks` must have shape [Q, K, D] (Q levels of K codes) with Q, K, D >= 1, "
                         f"got shape {codebooks.shape}")
    return codebooks


def _num_active(num_active, z, num_levels) -> jax.Array | None:
    if num_active is None:
        return None
    with jax.ensure_compile_time_eval():
        num_active = _checks.int_array(num_active, "num_active")
    lead = z.shape[:-1]
    if num_active.shape != lead[: num_active.ndim]:
        raise ValueError(f"`num_active` must have a prefix of z's leading shape {lead} (e.g. [] or the batch "
                         f"[{lead[0] if lead else ''}]), got shape {num_active.shape}")
    _checks.int_in_range(num_active, "num_active", 0, num_levels + 1, f" (there are Q = {num_levels} levels)")
    return num_active


def residual_quantize(
    z: ArrayLike,
    codebooks: ArrayLike,
    num_active: ArrayLike | None = None,
    *,
    exact: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Residual vector quantization: each level quantizes what the levels before it left over.

    ``r_0 = z``; for level ``q = 0..Q-1``: ``k_q = nearest_code(r_q, codebooks[q])``,
    ``r_{q+1} = r_q - e_{q, k_q}``; the quantization is ``sum_q e_{q, k_q}``, returned
    straight-through (``z_q = z + sg[sum_q e_q - z]``). With ``num_active`` (quantizer dropout,
    SoundStream section 3.3) only the first ``n`` levels of an example are used: its later
    levels get index ``-1`` and add nothing. Draw ``n`` with ``quantizer_dropout``.

    Train the codebooks with ``residual_ema_update`` (the EMA update of every level on its own
    residuals), or with a codebook loss on ``lookup(codebooks[q], ...)`` of the used levels.

    Args:
      z: latents ``[..., D]``, real (half precision is computed in float32).
      codebooks: ``[Q, K, D]``, one codebook per level.
      num_active: None (all ``Q`` levels everywhere) or an int array in ``0..Q`` whose shape is a
        prefix of ``z.shape[:-1]`` (``[B]``: one count per example; ``[]``: one for all). A
        traced value outside ``0..Q`` acts as the nearest of ``0`` and ``Q``.
      exact: as in ``nearest_code``.

    Returns:
      ``(z_q, indices)``: ``z_q`` of ``z``'s shape and dtype, int32 ``indices`` of shape
      ``[..., Q]`` (level ``q`` in ``indices[..., q]``; -1 where a level is dropped).

    Raises:
      ValueError: ``codebooks`` not ``[Q, K, D]``, ``z``'s last axis not ``D``, a ``num_active``
        of the wrong shape or a concrete count outside ``0..Q``.
      TypeError: complex/string/None arrays, a non-integer ``num_active``, a non-bool ``exact``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax import vq
      >>> codebooks = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])   # Q = 2 levels, K = 2, D = 1
      >>> z_q, idx = vq.residual_quantize(jnp.array([[4.8], [0.7]]), codebooks)
      >>> z_q.tolist(), idx.tolist()
      ([[5.0], [1.0]], [[1, 1], [0, 1]])
      >>> vq.residual_quantize(jnp.array([[4.8], [0.7]]), codebooks, jnp.array([1, 2]))[1].tolist()
      [[1, -1], [0, 1]]

    References:
      N. Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", IEEE/ACM TASLP 2021
      (arXiv:2107.03312), section 3.3, Algorithm 1 (residual VQ, quantizer dropout).
    """
    codebooks = _codebooks(codebooks)
    z = _checks.float_array(z, "z")
    _check_latents(z, codebooks.shape[2])
    if not isinstance(exact, bool):
        raise TypeError(f"`exact` must be a Python bool, got {exact!r}")
    num_active = _num_active(num_active, z, codebooks.shape[0])
    return _residual_kernel(z, codebooks, num_active, exact=exact)


def _active_mask(num_active, lead_shape, num_levels):
    """[Q, *lead] booleans: level q is used at a position (num_active broadcast from the left)."""
    levels = jnp.arange(num_levels, dtype=jnp.int32).reshape((num_levels,) + (1,) * len(lead_shape))
    if num_active is None:
        return jnp.ones((num_levels,) + tuple(lead_shape), bool)
    n = jnp.clip(num_active.astype(jnp.int32), 0, num_levels)
    n = n.reshape(n.shape + (1,) * (len(lead_shape) - n.ndim))
    return jnp.broadcast_to(levels < n[None], (num_levels,) + tuple(lead_shape))


@_checks.kernel("exact")
def _residual_kernel(z, codebooks, num_active, *, exact):
    compute = _checks.compute_dtype(z, codebooks)
    books = jax.lax.stop_gradient(codebooks).astype(compute)  # [Q, K, D]
    active = _active_mask(num_active, z.shape[:-1], books.shape[0])  # [Q, ...]

    def level(residual, xs):
        book, used = xs
        idx = _nearest_kernel(residual, book, exact=exact)  # [...]
        e = jnp.where(used[..., None], book[idx], 0.0)
        return residual - e, (jnp.where(used, idx, -1), e)

    r0 = jax.lax.stop_gradient(z).astype(compute)
    _, (indices, parts) = jax.lax.scan(level, r0, (books, active))  # [Q, ...], [Q, ..., D]
    total = jnp.sum(parts, axis=0).astype(z.dtype)
    z_q = z + jax.lax.stop_gradient(total - z)
    return z_q, jnp.moveaxis(indices, 0, -1).astype(jnp.int32)


def quantizer_dropout(key: jax.Array, shape, num_levels: int, *, min_levels: int = 1) -> jax.Array:
    """Quantizer dropout's number of residual levels per example, uniform in ``min_levels..num_levels``.

    SoundStream draws ``n_q`` uniformly in ``[1, N_q]`` for each training example (so one model
    serves every bitrate); pass the result as ``residual_quantize(..., num_active=n)``.

    Args:
      key: a PRNG key.
      shape: the shape of the counts, e.g. ``(B,)`` for one per example.
      num_levels: ``Q``, a positive Python int.
      min_levels: the smallest count, a Python int in ``0..Q`` (default 1, as SoundStream).

    Returns:
      int32 counts of ``shape``.

    Raises:
      TypeError: a missing key, non-int sizes.
      ValueError: ``num_levels < 1``, ``min_levels`` outside ``0..num_levels``, a bad ``shape``.

    Examples:
      >>> import jax
      >>> from genjax import vq
      >>> n = vq.quantizer_dropout(jax.random.key(0), (1000,), 4)
      >>> int(n.min()), int(n.max()), n.dtype.name
      (1, 4, 'int32')

    References:
      Zeghidour et al. 2021 (SoundStream), section 3.3.
    """
    key = _checks.key(key)
    shape = _checks.shape(shape)
    num_levels = _checks.positive_int(num_levels, "num_levels")
    min_levels = _checks.integer(min_levels, "min_levels", 0, num_levels)
    return jax.random.randint(key, shape, min_levels, num_levels + 1, dtype=jnp.int32)


def _check_stacked_state(state) -> tuple[int, int, int]:
    if not isinstance(state, EmaCodebook):
        raise TypeError(f"`state` must be an EmaCodebook with a leading level axis (jax.vmap(ema_init)(codebooks)), "
                        f"got {type(state).__name__}")
    q, k, d = _codebooks_state(state.codebook)
    for field, shape in (("hidden_count", (q, k)), ("hidden_sum", (q, k, d)), ("cluster_size", (q, k))):
        value = getattr(state, field)
        if not (hasattr(value, "dtype") and hasattr(value, "shape") and jnp.issubdtype(value.dtype, jnp.floating)):
            raise TypeError(f"`state.{field}` must be a floating array, got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")
        if value.shape != shape:
            raise ValueError(f"`state.{field}` must have shape {shape} for [Q, K, D] = [{q}, {k}, {d}] codebooks, "
                             f"got {value.shape}")
    if jnp.shape(state.count) != (q,):
        raise ValueError(f"`state.count` must have shape ({q},) (one count per level), got {jnp.shape(state.count)}")
    return q, k, d


def _codebooks_state(codebook):
    codebook = _checks.float_array(codebook, "state.codebook")
    if codebook.ndim != 3 or min(codebook.shape) < 1:
        raise ValueError(f"`state.codebook` must have shape [Q, K, D] (stacked levels, from "
                         f"jax.vmap(ema_init)(codebooks)), got shape {codebook.shape}")
    return codebook.shape


def residual_ema_update(
    state: EmaCodebook,
    z: ArrayLike,
    indices: ArrayLike,
    decay: float | ArrayLike = 0.99,
    eps: float | ArrayLike = 1e-5,
    *,
    axis_name: str | None = None,
) -> EmaCodebook:
    """``ema_update`` of every level of a residual quantizer, each on the residuals it quantized.

    ``state`` is a stack of ``EmaCodebook`` states, every field with a leading level axis
    ``[Q, ...]`` (``jax.vmap(vq.ema_init)(codebooks)``); ``indices`` are
    ``residual_quantize(z, state.codebook, ...)``'s. The residuals ``r_q`` are recomputed from
    ``state.codebook`` (the codes the assignment was made with: quantize, then update), and level
    ``q`` gets ``ema_update(state[q], r_q, indices[..., q], decay, eps)``, except that positions
    where the level was dropped (index -1) count for no code.

    Args:
      state: the stacked ``EmaCodebook``.
      z: the latents ``[..., D]`` that were quantized.
      indices: int ``[..., Q]`` in ``-1..K-1`` (concrete ones are checked).
      decay, eps: as in ``ema_update``.
      axis_name: as in ``ema_update``.

    Returns:
      The updated stacked ``EmaCodebook``.

    Raises:
      ValueError: mismatched shapes, a concrete index outside ``-1..K-1``, ``decay``/``eps`` out of
        their domains.
      TypeError: as ``ema_update``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import vq
      >>> state = jax.vmap(vq.ema_init)(jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]]))
      >>> z = jnp.array([[4.8], [0.7]])
      >>> _, idx = vq.residual_quantize(z, state.codebook)
      >>> state = vq.residual_ema_update(state, z, idx, eps=0.0)   # level means of the residuals
      >>> [[round(v, 4) for v in row] for row in state.codebook[..., 0].tolist()]
      [[0.7, 4.8], [-1.0, 0.75]]

    References:
      Zeghidour et al. 2021 (SoundStream), section 3.3 (EMA codebooks per level);
      van den Oord et al. 2017, Appendix A.1.
    """
    q, k, d = _check_stacked_state(state)
    decay = _checks.number(decay, "decay", 0.0, 1.0, high_open=True)
    eps = _checks.number(eps, "eps", 0.0)
    z = _checks.float_array(z, "z")
    indices = _indices(indices)
    _check_latents(z, d)
    if indices.shape != z.shape[:-1] + (q,):
        raise ValueError(f"`indices` must have shape {z.shape[:-1] + (q,)} (z's leading shape and Q = {q} levels), "
                         f"got shape {indices.shape}")
    _checks.int_in_range(indices, "indices", -1, k, f" (K = {k} codes; -1 marks a dropped level)")
    return _residual_ema_kernel(state, z, indices, decay, eps, axis_name=axis_name)


@_checks.kernel("axis_name")
def _residual_ema_kernel(state, z, indices, decay, eps, *, axis_name):
    dtype = _stat_dtype(state.hidden_sum.dtype)

    def level(residual, xs):
        sub, idx = xs
        new = _ema_kernel(sub, residual, idx, decay, eps, axis_name=axis_name)
        book = sub.codebook.astype(dtype)
        e = jnp.where((idx >= 0)[..., None], book[jnp.maximum(idx, 0)], 0.0)
        return residual - e, new

    r0 = jax.lax.stop_gradient(z).astype(dtype)
    _, new_state = jax.lax.scan(level, r0, (state, jnp.moveaxis(indices, -1, 0)))
    return new_state


# --------------------------------------------------------------------------------------------
# The rotation trick.
# --------------------------------------------------------------------------------------------


def rotation_trick(z: ArrayLike, e_k: ArrayLike) -> jax.Array:
    """The quantized vectors ``e_k`` in the forward pass, with the rotation trick's gradient to ``z``.

    With ``z_hat = z / ||z||``, ``e_hat = e / ||e||``, ``r = (z_hat + e_hat) / ||z_hat + e_hat||``
    and the rotation ``R = I - 2 r r^T + 2 e_hat z_hat^T`` (which maps ``z_hat`` to ``e_hat``;
    the product of two Householder reflections, Fifty et al. section 4.2), the output is
    ``e_tilde = sg[lambda R] z`` with ``lambda = ||e|| / ||z||`` (section 4, eq. 4 and 5): its
    value is ``e`` (returned exactly: ``e + (e_tilde - sg[e_tilde])``), and the gradient of a
    loss ``L`` is ``dL/dz = lambda R^T dL/de_tilde``, instead of the straight-through
    ``dL/dz = dL/de_tilde``. ``R z`` is computed without forming ``R``: ``z - 2 r (r.z) + 2
    e_hat (z_hat.z)``. No gradient reaches ``e_k`` (train the codebook with ``codebook_loss`` or
    ``ema_update``, as the paper).

    Where ``z = 0`` or ``e = 0`` the rotation is undefined and the gradient falls back to the
    straight-through identity; where ``e_hat = -z_hat`` (``r`` undefined) ``r = 0`` is used, and
    ``R = I - 2 z_hat z_hat^T`` still maps ``z_hat`` to ``e_hat``.

    Args:
      z: encoder outputs ``[..., D]``, real.
      e_k: their quantized vectors, the same shape (e.g. ``lookup(codebook, indices)``).

    Returns:
      ``[..., D]`` in ``z``'s dtype, equal to ``e_k`` (rounded to that dtype). Computed in at
      least float32.

    Raises:
      ValueError: shapes differ, or ``z`` is a scalar.
      TypeError: complex/string/None inputs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import vq
      >>> z, e = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
      >>> vq.rotation_trick(z, e).tolist()
      [0.0, 2.0]
      >>> g = jax.grad(lambda z: vq.rotation_trick(z, e)[1])(z)   # lambda R^T (0, 1) = 2 (1, 0)
      >>> [round(float(v), 5) for v in g]
      [2.0, 0.0]

    References:
      C. Fifty, R. G. Junkins, D. Duan, A. Iyengar, J. W. Liu, E. Amid, S. Thrun, C. Re,
      "Restructuring Vector Quantization with the Rotation Trick", ICLR 2025 (arXiv:2410.06424),
      sections 4.1-4.2.
    """
    z = _checks.float_array(z, "z")
    e_k = _checks.float_array(e_k, "e_k")
    if z.ndim < 1:
        raise ValueError("`z` must have shape [..., D], got a scalar")
    _checks.same_shape(z, e_k, "z", "e_k")
    return _rotation_kernel(z, e_k)


def _safe_unit(x, norm):
    ok = norm > 0
    return jnp.where(ok, x / jnp.where(ok, norm, 1.0), 0.0)


@jax.jit
def _rotation_kernel(z, e_k):
    compute = _checks.compute_dtype(z, e_k)
    x = z.astype(compute)
    e = jax.lax.stop_gradient(e_k).astype(compute)
    xs = jax.lax.stop_gradient(x)
    nz = jnp.linalg.norm(xs, axis=-1, keepdims=True)
    ne = jnp.linalg.norm(e, axis=-1, keepdims=True)
    z_hat, e_hat = _safe_unit(xs, nz), _safe_unit(e, ne)
    w = z_hat + e_hat
    r = _safe_unit(w, jnp.linalg.norm(w, axis=-1, keepdims=True))
    ok = (nz > 0) & (ne > 0)
    lam = jnp.where(ok, ne / jnp.where(ok, nz, 1.0), 1.0)
    dot = lambda a, b: jnp.sum(a * b, axis=-1, keepdims=True)
    rotated = x - 2.0 * r * dot(r, x) + 2.0 * e_hat * dot(z_hat, x)  # R z, R constant
    tilde = jnp.where(ok, lam * rotated, x)
    return (e + (tilde - jax.lax.stop_gradient(tilde))).astype(z.dtype)


# --------------------------------------------------------------------------------------------
# k-means++ initialisation.
# --------------------------------------------------------------------------------------------


def kmeans_plus_plus_init(
    key: jax.Array,
    z: ArrayLike,
    num_codes: int,
    *,
    num_iters: int = 0,
    axis_name: str | None = None,
) -> jax.Array:
    """A codebook from a batch of latents: k-means++ seeding, then ``num_iters`` Lloyd iterations.

    k-means++ (Arthur & Vassilvitskii 2007): the first code is a latent drawn uniformly; each
    next one is a latent drawn with probability proportional to ``D(x)^2``, its squared distance
    to the nearest code chosen so far (uniformly when every latent is already a code, e.g. fewer
    distinct latents than codes: codes then repeat). Each Lloyd iteration assigns every latent
    to its nearest code (``nearest_code``) and moves every used code to the mean of its latents;
    an unused code stays where it is. Step ``i`` draws with ``fold_in(key, i)``.

    Under ``axis_name`` the latents of all devices are gathered (``all_gather``, in device
    order), so that every device, given the same key, computes the same codebook from the whole
    batch. Memory ``[devices * N, D]`` plus ``[devices * N, K]`` for the Lloyd iterations.

    Args:
      key: a PRNG key (the same on all devices).
      z: latents ``[..., D]`` (all leading positions are points), at least one vector.
      num_codes: ``K``, a positive Python int.
      num_iters: Lloyd iterations after the seeding, a Python int ``>= 0``.
      axis_name: the ``pmap``/``shard_map`` axis to gather the batch over, or None.

    Returns:
      The codebook ``[K, D]``, float32 (float64 under x64).

    Raises:
      ValueError: an empty ``z``, a scalar ``z``, ``num_codes < 1``, ``num_iters < 0``.
      TypeError: a missing key, non-int ``num_codes``/``num_iters``, complex/string/None ``z``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax import vq
      >>> z = jnp.array([[0.0], [0.1], [10.0], [10.2]])
      >>> book = vq.kmeans_plus_plus_init(jax.random.key(0), z, 2, num_iters=2)
      >>> sorted(round(v, 2) for v in book[:, 0].tolist())
      [0.05, 10.1]

    References:
      D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007;
      S. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 1982.
    """
    key = _checks.key(key)
    z = _checks.float_array(z, "z")
    if z.ndim < 1:
        raise ValueError("`z` must have shape [..., D], got a scalar")
    if z.size == 0:
        raise ValueError(f"`z` must hold at least one latent vector to choose codes from, got shape {z.shape}")
    num_codes = _checks.positive_int(num_codes, "num_codes")
    num_iters = _checks.integer(num_iters, "num_iters", 0)
    return _kmeans_kernel(key, z, num_codes=num_codes, num_iters=num_iters, axis_name=axis_name)


@_checks.kernel("num_codes", "num_iters", "axis_name")
def _kmeans_kernel(key, z, *, num_codes, num_iters, axis_name):
    compute = _checks.compute_dtype(z)
    d = z.shape[-1]
    flat = jax.lax.stop_gradient(z).reshape(-1, d).astype(compute)  # [N, D]
    if axis_name is not None:
        flat = jax.lax.all_gather(flat, axis_name, tiled=True)  # [devices * N, D], device order
    n = flat.shape[0]
    first = flat[jax.random.randint(jax.random.fold_in(key, 0), (), 0, n)]
    centres = jnp.zeros((num_codes, d), compute).at[0].set(first)
    d2 = jnp.sum((flat - first) ** 2, axis=-1)  # [N]

    def seed(i, carry):
        centres, d2 = carry
        pos = d2 > 0
        logits = jnp.where(pos, jnp.log(jnp.where(pos, d2, 1.0)), -jnp.inf)
        logits = jnp.where(jnp.any(pos), logits, 0.0)
        c = flat[jax.random.categorical(jax.random.fold_in(key, i), logits)]
        return centres.at[i].set(c), jnp.minimum(d2, jnp.sum((flat - c) ** 2, axis=-1))

    centres, _ = jax.lax.fori_loop(1, num_codes, seed, (centres, d2))

    def lloyd(_, centres):
        idx = _nearest_kernel(flat, centres, exact=True)
        one_hot = jax.nn.one_hot(idx, num_codes, dtype=compute)  # [N, K]
        counts = jnp.sum(one_hot, axis=0)
        sums = jnp.matmul(one_hot.T, flat, precision=_HIGHEST)
        used = counts > 0
        return jnp.where(used[:, None], sums / jnp.where(used, counts, 1.0)[:, None], centres)

    return jax.lax.fori_loop(0, num_iters, lloyd, centres)
