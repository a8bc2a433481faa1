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
  from the whole batch.

References:
    A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
    NeurIPS 2017 (arXiv:1711.00937): eq. 3 and Appendix A.1 (EMA updates).
    A. Razavi, A. van den Oord, O. Vinyals, "Generating Diverse High-Fidelity Images with
    VQ-VAE-2", NeurIPS 2019 (EMA codebook, decay 0.99).
    dm-haiku ``haiku/_src/nets/vqvae.py`` (``VectorQuantizerEMA``) and
    ``haiku/_src/moving_averages.py`` (zero-debiased EMA); Sonnet 2 ``sonnet/src/nets/vqvae.py``.
    P. Dhariwal et al., "Jukebox: A Generative Model for Music", 2020, section 3.3 (random
    restarts of dead codes).
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
