"""Autoencoder objectives: reconstruction, corruption, sparsity, k-sparsity, contraction.

Public functions (all pure; safe under ``jit``, ``vmap`` and ``grad``):

- ``reconstruction_loss(x, output, likelihood)``: per-example squared error (``"mse"``) or
  Bernoulli cross-entropy from logits (``"bernoulli"``).
- ``corrupt(key, x, kind, level)``: the stochastic corruption ``x~ ~ q_D(x~ | x)`` of the
  denoising autoencoder, ``kind`` one of ``CORRUPTIONS``: ``"masking"``, ``"gaussian"``,
  ``"salt_and_pepper"``.
- ``sparsity_penalty(activations, rho)`` and ``sparsity_penalty_from_logits(logits, rho)``: the
  sparse autoencoder's ``sum_j KL(rho || rho_hat_j)``.
- ``k_sparse(z, k)``: the k-sparse autoencoder's ``supp_k``: keep the k largest entries per row.
- ``jacobian_norm_sq(encoder_fn, x)`` and ``contractive_penalty(encoder_fn, x)``: the squared
  Frobenius norm of any encoder's Jacobian, per example and as the batch mean; the closed forms
  for one dense layer, ``dense_jacobian_norm_sq(slopes, kernel)`` and
  ``sigmoid_contractive_penalty(hidden, kernel)``, which are exact and much cheaper.

Conventions:

- **Batches.** Axis 0 is the batch wherever a function averages over the batch (the penalties);
  ``reconstruction_loss`` reduces the event ``axis`` (default ``-1``; pass ``axis=(1, 2, 3)``
  for images ``[B, H, W, C]``) and keeps the rest, so it returns one value per example.
- **Shapes** must match exactly; nothing is broadcast silently (``ValueError`` naming both).
- **Keys** come first in the one function that samples (``corrupt``) and are never defaulted
  (``None`` is a ``TypeError``); typed keys (``jax.random.key``) and raw ``uint32[2]`` keys are
  both accepted. Callables come before data (``jacobian_norm_sq(encoder_fn, x)``).
- **Dtypes.** Inputs are real arrays: integer and boolean arrays are promoted to the default
  float, as ``jax.numpy`` does (integer images: convert them to floats in ``[0, 1]`` first, e.g.
  with ``genjax.data.to_float``, or a loss sees 0..255); complex numbers, strings and ``None``
  are a ``TypeError``. Half-precision inputs are computed in float32 and returned in their dtype.
- **Static numbers** (``level``, ``rho``, ``value_range``) given as Python numbers are checked
  against their domain (``ValueError``, NaN included; strings and booleans are a
  ``TypeError``); traced values are used as given. Counts (``k``, ``max_k``) must be ints: ``2.0``
  and ``True`` are a ``TypeError`` (the policy of ``genjax._checks``).
- **Infinities.** The Bernoulli cross-entropy at infinite logits is its limit (0 for the outcome
  the logit makes certain, ``+inf`` for any other), never NaN; a sparsity penalty whose batch
  mean activation is exactly 0 or 1 is ``+inf`` (``sparsity_penalty_from_logits`` stays finite).
  A finite value has a finite gradient, unless the gradient itself exceeds the input dtype's
  range (float16).
- **Dense layers** follow Flax's layout: ``a = x @ kernel + bias`` with ``kernel`` ``[D, H]``.

References:
    P. Vincent, H. Larochelle, Y. Bengio and P.-A. Manzagol, "Extracting and composing robust
    features with denoising autoencoders", ICML 2008.
    P. Vincent, H. Larochelle, I. Lajoie, Y. Bengio and P.-A. Manzagol, "Stacked denoising
    autoencoders", JMLR 11, 2010 (section 4.2: masking, Gaussian and salt-and-pepper noise).
    A. Ng, "Sparse autoencoder", CS294A lecture notes, Stanford, 2011.
    A. Makhzani and B. Frey, "k-Sparse Autoencoders", ICLR 2014 (arXiv:1312.5663).
    S. Rifai, P. Vincent, X. Muller, X. Glorot and Y. Bengio, "Contractive auto-encoders:
    explicit invariance during feature extraction", ICML 2011.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from genjax import _checks, _numerics, divergences

__all__ = [
    "CORRUPTIONS",
    "reconstruction_loss",
    "corrupt",
    "sparsity_penalty",
    "sparsity_penalty_from_logits",
    "k_sparse",
    "jacobian_norm_sq",
    "contractive_penalty",
    "dense_jacobian_norm_sq",
    "sigmoid_contractive_penalty",
]

CORRUPTIONS = ("masking", "gaussian", "salt_and_pepper")
RECONSTRUCTIONS = ("mse", "bernoulli")

Axis = _checks.Axis


# --------------------------------------------------------------------------------------------
# Validation (static: it runs in Python, at trace time; the shared checks are genjax._checks).
# --------------------------------------------------------------------------------------------


def _concrete_float(value: Any) -> float | None:
    """`value` as a Python float if it is known at trace time, None if it is traced."""
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


# --------------------------------------------------------------------------------------------
# Reconstruction.
# --------------------------------------------------------------------------------------------


def reconstruction_loss(
    x: ArrayLike,
    output: ArrayLike,
    likelihood: str,
    *,
    axis: Axis = -1,
    reduction: str = "sum",
) -> jax.Array:
    """Per-example reconstruction loss of an autoencoder.

    - ``likelihood="mse"``: squared error, ``output`` is the reconstruction x_hat:
      ``L(x, x_hat) = sum_i (x_i - x_hat_i)^2`` (twice the negative log-likelihood of a
      unit-variance Gaussian, up to its constant).
    - ``likelihood="bernoulli"``: cross-entropy of ``x`` under Bernoulli(sigmoid(l)), ``output``
      the decoder's logits l: ``L(x, l) = -sum_i [x_i log s(l_i) + (1 - x_i) log(1 - s(l_i))]
      = sum_i [softplus(l_i) - x_i l_i]``, stable for any finite logits, and the limit at
      infinite ones (a logit of ``+inf`` costs 0 for ``x = 1`` and ``+inf`` for ``x < 1``; never
      NaN). ``x`` may be real-valued in ``[0, 1]`` (grey levels, as in Vincent et al. 2010);
      then the minimum over l is the binary entropy of x, not 0.

    ``reduction="sum"`` (default) sums over ``axis``, the scale of the papers' objectives (and the
    scale on which the penalties' weights are quoted); ``"mean"`` averages over it (with
    ``likelihood="mse"`` that is the per-example mean squared error).

    Args:
      x: targets, any shape, real (integer and boolean arrays are promoted to the default float:
        convert integer images to floats in ``[0, 1]`` first, e.g. with genjax.data.to_float).
      output: reconstructions (``"mse"``) or logits (``"bernoulli"``), the shape of ``x``.
      likelihood: ``"mse"`` or ``"bernoulli"`` (the keyword name of ``genjax.vae.elbo``).
      axis: the event axes to reduce: an int, a tuple of ints, or None for all (default -1).
      reduction: ``"sum"`` or ``"mean"`` over ``axis``.

    Returns:
      The loss per example: ``x``'s shape without ``axis``, e.g. ``[B]`` for ``[B, D]`` inputs.

    Raises:
      ValueError: unknown ``likelihood``/``reduction``, mismatched shapes, bad ``axis``, a
        ``"mean"`` over axes with no entries.
      TypeError: non-real inputs (complex, strings, None), ``axis`` not ints.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import reconstruction_loss
      >>> x = jnp.array([[0.0, 1.0], [1.0, 1.0]])
      >>> reconstruction_loss(x, jnp.array([[0.5, 1.0], [1.0, 0.0]]), "mse").tolist()
      [0.25, 1.0]
      >>> [round(v, 4) for v in reconstruction_loss(x, jnp.zeros((2, 2)), "bernoulli").tolist()]
      [1.3863, 1.3863]

    References:
      Vincent et al., JMLR 2010, section 2.2 (squared error and the cross-entropy loss
      L_H for inputs in [0, 1]).
    """
    _checks.choice(likelihood, "likelihood", RECONSTRUCTIONS)
    _checks.choice(reduction, "reduction", ("sum", "mean"))
    x = _checks.float_array(x, "x")
    output = _checks.float_array(output, "output")
    _checks.same_shape(x, output, "x", "output")
    axes = _checks.axes(axis, x.ndim)
    kept = math.prod(d for a, d in enumerate(x.shape) if a not in axes)
    if reduction == "mean" and kept and not math.prod(x.shape[a] for a in axes):
        raise ValueError(f"`reduction`='mean' over the axes {axes} of x.shape={x.shape}, which have no "
                         "entries: a mean over no entries is undefined")
    return _reconstruction_kernel(x, output, likelihood=likelihood, axes=axes, reduction=reduction)


@_checks.kernel("likelihood", "axes", "reduction")
def _reconstruction_kernel(x, output, *, likelihood, axes, reduction):
    out_dtype = jnp.result_type(x, output)
    compute = _checks.compute_dtype(out_dtype)
    x, output = x.astype(compute), output.astype(compute)
    k = len(axes)
    if k > 1 and axes == tuple(range(x.ndim - k, x.ndim)):  # trailing axes: reduce them as one
        x, output = _numerics.flatten_trailing(x, k), _numerics.flatten_trailing(output, k)
        axes = (x.ndim - 1,)
    if likelihood == "mse":
        per_entry = jnp.square(x - output)
    else:
        per_entry = -_numerics.bernoulli_log_prob(x, output)
    reduce = jnp.sum if reduction == "sum" else jnp.mean
    return reduce(per_entry, axis=axes).astype(out_dtype)


# --------------------------------------------------------------------------------------------
# Corruption (denoising autoencoders).
# --------------------------------------------------------------------------------------------


def corrupt(
    key: ArrayLike,
    x: ArrayLike,
    kind: str,
    level: float | ArrayLike,
    *,
    axis: Axis = -1,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> jax.Array:
    """Draws a corrupted copy ``x~ ~ q_D(x~ | x)`` of each example, as the denoising AE trains on.

    The three corruptions of Vincent et al. (2010, section 4.2), for each example separately:

    - ``"masking"`` (MN): a fraction ``level`` of the entries, chosen uniformly at random, is
      forced to 0: exactly ``round(level * d)`` of the example's ``d`` entries (the fixed number
      of Vincent et al. 2008, not an independent coin per entry).
    - ``"gaussian"`` (GS): additive isotropic Gaussian noise, ``x~ = x + level * eps``,
      ``eps ~ N(0, I)``: ``level`` is the standard deviation sigma. No clipping.
    - ``"salt_and_pepper"`` (SP): a fraction ``level`` of the entries (again exactly
      ``round(level * d)``, chosen at random) is set to the minimum or the maximum of
      ``value_range`` by a fair coin flip each.

    An "example" is one slice along the event ``axis`` (default ``-1``: pass ``axis=(1, 2, 3)``
    to corrupt whole images ``[B, H, W, C]``); the other axes are batch axes. The result depends
    on ``(key, x, level)`` only; different examples get independent corruptions.

    Cost: a concrete ``level`` (a Python number) fixes the count when tracing, and the entries
    are chosen by one ``lax.top_k`` of uniform scores per example (a new level compiles a new
    program); a traced ``level`` draws a random permutation of each example instead, a slower
    sort on CPU. The two are different draws from the same distribution.

    Args:
      key: a PRNG key (``jax.random.key(seed)``), required.
      x: clean inputs, real, any shape (integer and boolean arrays become the default float).
      kind: one of ``"masking"``, ``"gaussian"``, ``"salt_and_pepper"``.
      level: the fraction of corrupted entries in [0, 1] (masking, salt-and-pepper) or the noise
        standard deviation >= 0 (gaussian); a scalar, possibly traced (e.g. vmapped over levels).
        A traced level cannot be checked and is used as given: a fraction below 0 corrupts no
        entry and one above 1 every entry; a negative std flips the noise's sign (the same
        distribution as ``|level|``).
      axis: the axes that make up one example (int, tuple of ints, or None for the whole array).
      value_range: ``(low, high)``, two finite numbers with ``low < high``, the salt-and-pepper
        values (default ``(0, 1)``).

    Returns:
      The corrupted inputs, the shape and (floating) dtype of ``x``.

    Raises:
      ValueError: unknown ``kind``, ``level`` out of its kind's domain or NaN (checked when it
        is concrete: a Python number or a concrete array), a non-scalar ``level``, a bad
        ``axis``, a ``value_range`` that is not two finite numbers with ``low < high``.
      TypeError: ``key`` not a PRNG key (``None`` included), non-real ``x``, ``level`` or
        ``value_range`` entries that are strings, booleans or None (``level="0.3"``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from genjax.autoencoders import corrupt
      >>> x = jnp.ones((2, 10))
      >>> x_tilde = corrupt(jax.random.key(0), x, "masking", 0.3)
      >>> (x_tilde == 0).sum(axis=-1).tolist()  # exactly 30% of each example
      [3, 3]

    References:
      Vincent et al., ICML 2008, section 2.3 (masking noise); Vincent et al., JMLR 2010,
      section 4.2 (the three corruptions).
    """
    key = _checks.key(key)
    _checks.choice(kind, "kind", CORRUPTIONS)
    x = _checks.float_array(x, "x")
    value = _level(level, kind)
    low, high = _value_range(value_range)
    axes = _checks.axes(axis, x.ndim)
    d = math.prod(x.shape[a] for a in axes)
    # A level known now fixes the count, and the cheap top-k selection applies; a traced level
    # (e.g. vmapped over levels) selects by the ranks of a random permutation of each example.
    count = None if value is None or kind == "gaussian" else int(round(value * d))
    return _corrupt_kernel(key, x, jnp.asarray(level, _checks.compute_dtype(x.dtype)),
                           kind=kind, axes=axes, value_range=(low, high), count=count)


def _level(level: Any, kind: str) -> float | None:
    """Checks `level` against its kind's domain; its value if known now, None if traced."""
    high = None if kind == "gaussian" else 1.0
    what = ("the Gaussian noise std" if kind == "gaussian"
            else f"the fraction of corrupted entries for {kind!r}")
    try:
        level = _checks.number(level, "level", 0.0, high)
        value = level if isinstance(level, float) else _concrete_float(level)
        if value is not None:  # a concrete array: checked as a number
            _checks.number(value, "level", 0.0, high)
    except ValueError as err:
        raise ValueError(f"{err} ({what})") from None
    return value


def _value_range(value_range: Any) -> tuple[float, float]:
    if isinstance(value_range, (str, bytes)) or not isinstance(value_range, Sequence):
        raise TypeError(f"`value_range` must be a pair of numbers (low, high), got {value_range!r}")
    if len(value_range) != 2:
        raise ValueError(f"`value_range` must be a pair of numbers (low, high), got {value_range!r}")
    low, high = (_concrete_float(_checks.number(v, "value_range")) for v in value_range)
    if low is None or high is None:
        raise TypeError(f"`value_range` must be a pair of concrete numbers, got {value_range!r}")
    _checks.number(low, "value_range[0]")
    _checks.number(high, "value_range[1]")
    if not low < high:
        raise ValueError(f"`value_range` must be (low, high) with low < high, got {value_range!r}")
    return low, high


@_checks.kernel("kind", "axes", "value_range", "count")
def _corrupt_kernel(key, x, level, *, kind, axes, value_range, count):
    compute = _checks.compute_dtype(x.dtype)
    if kind == "gaussian":
        noise = jax.random.normal(key, x.shape, compute)
        return (x.astype(compute) + level * noise).astype(x.dtype)
    # Lay each example out as one row [..., d], choose round(level * d) entries of every row
    # uniformly at random, and lay the result back out.
    batch_axes = tuple(a for a in range(x.ndim) if a not in axes)
    order = batch_axes + axes
    rows = jnp.transpose(x, order)
    batch_shape, event_shape = rows.shape[: len(batch_axes)], rows.shape[len(batch_axes) :]
    d = math.prod(event_shape)
    rows = rows.reshape(*batch_shape, d)
    select_key, coin_key = jax.random.split(key)
    if count is not None:  # the `count` entries with the largest i.i.d. uniform scores
        selected = _top_k_mask(jax.random.uniform(select_key, rows.shape), count)
    else:  # the entries whose rank in a random permutation of the row is below the count
        positions = jnp.broadcast_to(jnp.arange(d), rows.shape)
        ranks = jax.random.permutation(select_key, positions, axis=-1, independent=True)
        selected = ranks < jnp.round(level * d).astype(ranks.dtype)
    if kind == "masking":
        replacement = jnp.zeros((), x.dtype)
    else:
        low, high = value_range
        coin = jax.random.bernoulli(coin_key, 0.5, rows.shape)
        replacement = jnp.where(coin, jnp.asarray(high, x.dtype), jnp.asarray(low, x.dtype))
    rows = jnp.where(selected, replacement, rows)
    return jnp.transpose(rows.reshape(*batch_shape, *event_shape), _inverse(order))


def _top_k_mask(scores: jax.Array, k: int) -> jax.Array:
    """Boolean mask of the k largest entries of each row (ties: the lower index), static k."""
    if k == 0:
        return jnp.zeros(scores.shape, bool)
    _, top = jax.lax.top_k(scores, k)  # [..., k]
    return jnp.put_along_axis(jnp.zeros(scores.shape, bool), top, True, axis=-1, inplace=False)


def _inverse(permutation: tuple[int, ...]) -> tuple[int, ...]:
    inverse = [0] * len(permutation)
    for i, p in enumerate(permutation):
        inverse[p] = i
    return tuple(inverse)


# --------------------------------------------------------------------------------------------
# Sparsity (sparse and k-sparse autoencoders).
# --------------------------------------------------------------------------------------------


def _layers(activations: Any, name: str) -> list[tuple[str, jax.Array]]:
    layers = list(activations) if isinstance(activations, (list, tuple)) else [activations]
    if not layers:
        raise ValueError(f"`{name}` must be an array [B, units...] or a non-empty sequence of them")
    out = []
    for i, h in enumerate(layers):
        label = name if len(layers) == 1 else f"{name}[{i}]"
        h = _checks.float_array(h, label)
        if h.ndim < 2:
            raise ValueError(f"`{label}` must be a batch of activations [B, units...], got shape {h.shape}")
        _checks.batched(h, label, "the sparsity penalty (a mean over the batch)")
        out.append((label, h))
    return out


def _rho(rho: Any) -> jax.Array:
    """The target activation: a Python number in (0, 1) (checked), or a real array as given."""
    if _checks.is_static_number(rho) or rho is None or isinstance(rho, (bool, str, bytes)):
        return jnp.asarray(_checks.number(rho, "rho", 0.0, 1.0, low_open=True, high_open=True))
    return _checks.float_array(rho, "rho")


def _rho_for(rho: jax.Array, layer: jax.Array, label: str) -> jax.Array:
    _checks.broadcasts_into(rho, layer.shape[1:], "rho", f"the units of {label}")
    return rho


def sparsity_penalty(activations: ArrayLike | Sequence[ArrayLike], rho: float | ArrayLike) -> jax.Array:
    """The sparse autoencoder's penalty ``sum_j KL(rho || rho_hat_j)``.

    ``rho_hat_j = (1/B) sum_b a_bj`` is hidden unit j's mean activation over the batch, and
    ``KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat))``
    the KL divergence between Bernoulli variables (``genjax.divergences.bernoulli_kl``). It is 0
    exactly when every unit's mean activation equals the target ``rho`` and grows without bound
    as ``rho_hat_j`` approaches 0 or 1. The activations must lie in [0, 1] (sigmoid units).
    The training objective is ``reconstruction + beta * sparsity_penalty(...)``; ``beta`` is
    the caller's. Given a sequence of layers' activations the penalties are summed, so one call
    regularises several layers with the same ``rho``.

    If a batch mean is exactly 0 or 1 (saturated sigmoids in float32) the value is ``+inf``;
    ``sparsity_penalty_from_logits`` computes the same penalty from pre-activations and stays
    finite.

    Args:
      activations: ``[B, units...]`` in [0, 1] (units: all axes after the batch axis 0), or a
        list/tuple of such arrays (one per layer; the batch sizes may differ).
      rho: the target mean activation: a Python number in (0, 1), or an array broadcastable to
        ``units...`` (used as given: entries outside [0, 1] give NaN).

    Returns:
      A scalar: the sum over layers and units.

    Raises:
      ValueError: an activation array with fewer than 2 axes or an empty batch; ``rho`` not
        broadcastable to a layer's units, or a number outside (0, 1) (NaN included).
      TypeError: non-real activations or ``rho`` (complex, strings, None, booleans).

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import sparsity_penalty
      >>> a = jnp.array([[0.1, 0.5], [0.0, 0.5]])  # rho_hat = (0.05, 0.5)
      >>> round(float(sparsity_penalty(a, 0.05)), 4)  # KL(0.05||0.05) + KL(0.05||0.5)
      0.4946

    References:
      Ng, "Sparse autoencoder", CS294A notes (2011), section 3; Cover & Thomas (2006) eq. 2.26.
    """
    rho = _rho(rho)
    total = None
    for label, h in _layers(activations, "activations"):
        rho_hat = jnp.mean(h, axis=0)  # [units...]
        kl = jnp.sum(divergences.bernoulli_kl(_rho_for(rho, h, label), rho_hat))
        total = kl if total is None else total + kl
    return total


def sparsity_penalty_from_logits(logits: ArrayLike | Sequence[ArrayLike], rho: float | ArrayLike) -> jax.Array:
    """``sparsity_penalty(sigmoid(logits), rho)``, computed in log space: finite for any logits.

    With ``s`` the sigmoid, ``log rho_hat_j = logsumexp_b log s(l_bj) - log B`` and
    ``log(1 - rho_hat_j) = logsumexp_b log s(-l_bj) - log B``, so saturated units (logits of
    +-1e4) give large finite penalties and finite gradients instead of ``inf``/NaN.

    Args:
      logits: pre-activations ``[B, units...]`` of sigmoid units, or a sequence of them.
      rho: the target mean activation, a Python number in (0, 1) or an array broadcastable to
        ``units...`` (as in ``sparsity_penalty``).

    Returns:
      A scalar: ``sum_layers sum_j KL(rho || rho_hat_j)``.

    Raises:
      ValueError / TypeError: as ``sparsity_penalty``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import sparsity_penalty_from_logits
      >>> round(float(sparsity_penalty_from_logits(jnp.zeros((4, 3)), 0.5)), 6)  # rho_hat = 0.5
      0.0

    References:
      Ng, "Sparse autoencoder", CS294A notes (2011), section 3.
    """
    rho = _rho(rho)
    total = None
    for label, layer in _layers(logits, "logits"):
        kl = _sparsity_from_logits_kernel(layer, _rho_for(rho, layer, label))
        total = kl if total is None else total + kl
    return total


@jax.jit
def _sparsity_from_logits_kernel(logits, rho):
    out_dtype = logits.dtype
    compute = _checks.compute_dtype(out_dtype)
    logits = logits.astype(compute)
    rho = jnp.broadcast_to(rho.astype(compute), logits.shape[1:])
    log_b = jnp.log(jnp.asarray(logits.shape[0], compute))
    log_rho_hat = jax.nn.logsumexp(_numerics.log_sigmoid(logits), axis=0) - log_b  # [units...]
    log_one_minus = jax.nn.logsumexp(_numerics.log_sigmoid(-logits), axis=0) - log_b
    kl = (_xlogx(rho) - rho * log_rho_hat) + (_xlogx(1.0 - rho) - (1.0 - rho) * log_one_minus)
    return jnp.sum(kl).astype(out_dtype)


def _xlogx(p):
    """p log p with 0 log 0 = 0 (and a zero derivative there)."""
    nz = p != 0
    safe = jnp.where(nz, p, 1.0)
    return jnp.where(nz, safe * jnp.log(safe), 0.0)


def k_sparse(z: ArrayLike, k: int | ArrayLike, *, max_k: int | None = None) -> jax.Array:
    """Keeps the k largest entries of each row of ``z`` and sets the others to 0 (``supp_k``).

    The k-sparse autoencoder's hidden layer: ``h = z * 1[j in top_k(z)]``, row by row over the
    last axis. Exactly k entries per row are kept (ties broken in favour of the lower index), and
    the gradient flows only through them: ``d h_j / d z_j = 1`` for kept j, 0 otherwise (the
    selection itself is piecewise constant), which is the paper's back-propagation "only through
    the k largest activations".

    Args:
      z: activations ``[..., H]`` (the k-sparse AE uses linear units ``z = x @ W + b``).
      k: how many to keep, ``0 <= k <= H``: a Python int (static), or a traced integer scalar,
        e.g. a sparsity level annealed during training (Makhzani & Frey, section 3.2). A traced
        ``k`` is used as given: below 0 it keeps no entry, above ``H`` every entry.
      max_k: for a traced ``k``, a static upper bound on it, a Python int in ``[0, H]``. Then the
        selection is one ``lax.top_k(z, max_k)``; without it, a traced ``k`` costs two sorts of
        each row, much slower on CPU. A traced ``k`` above ``max_k`` keeps ``max_k`` entries.

    Returns:
      ``z`` with all but the k largest entries of each row zeroed, the shape and (floating)
      dtype of ``z``.

    Raises:
      ValueError: ``z`` is a scalar, a static ``k`` or ``max_k`` outside ``[0, H]``, a ``k``
        array that is not a scalar.
      TypeError: non-real ``z``; ``k`` neither a Python int nor an integer array (``2.0``,
        ``True``); ``max_k`` not a Python int.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import k_sparse
      >>> k_sparse(jnp.array([[0.3, -1.0, 2.0, 0.5]]), 2).tolist()
      [[0.0, 0.0, 2.0, 0.5]]
      >>> k_sparse(jnp.array([[0.3, -1.0, 2.0, 0.5]]), jnp.int32(1), max_k=3).tolist()
      [[0.0, 0.0, 2.0, 0.0]]

    References:
      Makhzani & Frey, "k-Sparse Autoencoders", ICLR 2014, Algorithm 1.
    """
    z = _checks.float_array(z, "z")
    if z.ndim < 1:
        raise ValueError("`z` must have at least one axis (the units), got a scalar")
    h = z.shape[-1]
    if max_k is not None:
        max_k = _checks.integer(max_k, "max_k", 0, h)
    if isinstance(k, numbers.Integral) and not isinstance(k, bool):
        return _k_sparse_static(z, k=_checks.integer(k, "k", 0, h))
    if not _is_int_array(k):
        raise TypeError(f"`k` must be an integer (a Python int or an integer scalar array), got {k!r}")
    k = _checks.int_array(k, "k")
    if k.ndim != 0:
        raise ValueError(f"`k` must be a scalar, got shape {k.shape}")
    if max_k is not None:
        return _k_sparse_bounded(z, k, max_k=max_k)
    return _k_sparse_traced(z, k)


def _is_int_array(k: Any) -> bool:
    return (hasattr(k, "dtype") and not isinstance(k, (str, bytes))
            and jnp.issubdtype(k.dtype, jnp.integer))


@_checks.kernel("k")
def _k_sparse_static(z, *, k):
    if k == z.shape[-1]:
        return z
    return jnp.where(_top_k_mask(z, k), z, jnp.zeros((), z.dtype))


@_checks.kernel("max_k")
def _k_sparse_bounded(z, k, *, max_k):
    if max_k == 0:
        return jnp.where(False, z, jnp.zeros((), z.dtype))
    _, top = jax.lax.top_k(z, max_k)  # [..., max_k], in decreasing order
    keep_ranked = jnp.broadcast_to(jnp.arange(max_k) < k, top.shape)  # the first k of them
    keep = jnp.put_along_axis(jnp.zeros(z.shape, bool), top, keep_ranked, axis=-1, inplace=False)
    return jnp.where(keep, z, jnp.zeros((), z.dtype))


@jax.jit
def _k_sparse_traced(z, k):
    order = jnp.argsort(-z, axis=-1, stable=True)  # descending; ties keep the lower index first
    ranks = jnp.argsort(order, axis=-1)
    return jnp.where(ranks < k, z, jnp.zeros((), z.dtype))


# --------------------------------------------------------------------------------------------
# Contraction (contractive autoencoders).
# --------------------------------------------------------------------------------------------


def jacobian_norm_sq(encoder_fn: Callable[[jax.Array], Any], x: ArrayLike) -> jax.Array:
    """``||d encoder_fn(x_b) / d x_b||_F^2`` for each example of a batch, by autodiff.

    ``encoder_fn`` maps ONE example (``x[b]``, shape ``x.shape[1:]``) to its code (an array or a
    pytree of arrays; the norm sums over all of it). The Jacobian is built with forward mode
    when the example has fewer entries than the code and reverse mode otherwise, i.e. with
    ``min(d_in, d_out)`` passes per example, and the examples are vmapped. That costs about
    ``min(d_in, d_out)`` encoder evaluations per example; for one dense layer the closed form
    ``dense_jacobian_norm_sq`` is exact and costs one.

    Args:
      encoder_fn: a function of one example, differentiable (jax-traceable).
      x: a batch of inputs ``[B, ...]``, floating.

    Returns:
      ``[B]``, the squared Frobenius norm of each example's Jacobian.

    Raises:
      TypeError: ``encoder_fn`` not callable, non-floating ``x``.
      ValueError: ``x`` is a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import jacobian_norm_sq
      >>> w = jnp.array([[1.0, 2.0], [0.0, 3.0]])  # J = w.T for x -> x @ w
      >>> jacobian_norm_sq(lambda v: v @ w, jnp.ones((2, 2))).tolist()
      [14.0, 14.0]

    References:
      Rifai et al., "Contractive auto-encoders", ICML 2011, section 2.
    """
    if not callable(encoder_fn):
        raise TypeError(f"`encoder_fn` must be a function of one example, got {type(encoder_fn).__name__}")
    x = _checks.float_array(x, "x")
    if x.ndim < 1:
        raise ValueError("`x` must be a batch [B, ...], got a scalar")
    example = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    try:
        code = jax.eval_shape(encoder_fn, example)
    except TypeError as err:
        raise TypeError(f"`encoder_fn` must map one example of shape {x.shape[1:]} to arrays: {err}") from err
    if not jax.tree.leaves(code):
        raise ValueError(f"`encoder_fn` returned no arrays for an example of shape {x.shape[1:]} (got {code!r})")
    d_in = math.prod(x.shape[1:])
    d_out = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(code))
    jacobian = jax.jacfwd(encoder_fn) if d_in <= d_out else jax.jacrev(encoder_fn)

    def one(xb):
        leaves = jax.tree.leaves(jacobian(xb))
        return sum(jnp.sum(jnp.square(j.astype(_checks.compute_dtype(j.dtype)))) for j in leaves)

    if x.shape[0] == 0:
        return jnp.zeros((0,), _checks.compute_dtype(x.dtype))
    return jax.vmap(one)(x)


def contractive_penalty(encoder_fn: Callable[[jax.Array], Any], x: ArrayLike) -> jax.Array:
    """The contractive autoencoder's penalty: the batch mean of ``||J_f(x_b)||_F^2``.

    ``||J_f(x)||_F^2 = sum_ij (d f_j(x) / d x_i)^2`` for the encoder f (``encoder_fn``, a function
    of ONE example). The training objective is ``reconstruction + lambda * penalty``; lambda is the
    caller's. For the usual sigmoid encoder ``sigmoid_contractive_penalty`` gives the same value
    in closed form, at the cost of one forward pass.

    Args:
      encoder_fn: maps one example ``x[b]`` to its code; differentiable.
      x: a batch ``[B, ...]`` with ``B >= 1``.

    Returns:
      A scalar: ``(1/B) sum_b ||J_f(x_b)||_F^2``.

    Raises:
      TypeError: ``encoder_fn`` not callable, non-floating ``x``.
      ValueError: a scalar or an empty batch.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import contractive_penalty
      >>> float(contractive_penalty(lambda v: 3.0 * v, jnp.ones((5, 4))))  # ||3 I_4||_F^2
      36.0

    References:
      Rifai et al., "Contractive auto-encoders", ICML 2011, section 2.
    """
    x = _checks.float_array(x, "x")
    _checks.batched(x, "x", "the contractive penalty (a mean over the batch)")
    return jnp.mean(jacobian_norm_sq(encoder_fn, x))


def dense_jacobian_norm_sq(slopes: ArrayLike, kernel: ArrayLike) -> jax.Array:
    """Closed-form ``||J||_F^2`` per example for one dense layer ``h = f(x @ kernel + bias)``.

    With an elementwise activation f, ``J_ji = d h_j / d x_i = f'(a_j) W_ij``, hence
    ``||J||_F^2 = sum_j f'(a_j)^2 sum_i W_ij^2``: one pass, no Jacobian. ``slopes`` are
    ``f'(a)``: ``h (1 - h)`` for the sigmoid (``sigmoid_contractive_penalty``), ``1[a > 0]`` for
    the ReLU, and the keep-mask for the k-sparse layer (whose selection is locally constant).

    Args:
      slopes: ``f'(a)``, shape ``[..., H]``.
      kernel: the layer's weights ``W``, shape ``[D, H]`` (Flax layout: ``a = x @ W + b``).

    Returns:
      ``slopes.shape[:-1]``: the squared Frobenius norm per example.

    Raises:
      ValueError: ``kernel`` not 2-D or its ``H`` differs from ``slopes``'s last axis.
      TypeError: non-floating inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import dense_jacobian_norm_sq
      >>> w = jnp.array([[1.0, 2.0], [0.0, 3.0]])  # column norms^2: 1, 13
      >>> dense_jacobian_norm_sq(jnp.array([[1.0, 0.5]]), w).tolist()
      [4.25]

    References:
      Rifai et al., ICML 2011, section 3 (the sigmoid case in closed form).
    """
    slopes = _checks.float_array(slopes, "slopes")
    kernel = _checks.float_array(kernel, "kernel")
    if kernel.ndim != 2:
        raise ValueError(f"`kernel` must be a dense layer's weights [D, H], got shape {kernel.shape}")
    if slopes.ndim < 1 or slopes.shape[-1] != kernel.shape[1]:
        raise ValueError(f"`slopes` must have shape [..., H] with H = kernel.shape[1] = {kernel.shape[1]}, "
                         f"got slopes.shape={slopes.shape}")
    return _dense_jacobian_kernel(slopes, kernel)


@jax.jit
def _dense_jacobian_kernel(slopes, kernel):
    out_dtype = jnp.result_type(slopes, kernel)
    compute = _checks.compute_dtype(out_dtype)
    column_norms = jnp.sum(jnp.square(kernel.astype(compute)), axis=0)  # [H]
    return (jnp.square(slopes.astype(compute)) @ column_norms).astype(out_dtype)


def sigmoid_contractive_penalty(hidden: ArrayLike, kernel: ArrayLike) -> jax.Array:
    """The contractive penalty of a sigmoid encoder ``h = sigmoid(x @ W + b)``, in closed form.

    ``(1/B) sum_b sum_j (h_bj (1 - h_bj))^2 sum_i W_ij^2`` (Rifai et al. 2011, section 3), equal
    to ``contractive_penalty(lambda x: sigmoid(x @ W + b), x)`` for the ``x`` that produced
    ``hidden``, at the cost of the forward pass that the loss needs anyway.

    Args:
      hidden: the encoder's outputs ``h`` in [0, 1], ``[B, H]`` with ``B >= 1``.
      kernel: its weights ``W``, ``[D, H]``.

    Returns:
      A scalar, the batch mean.

    Raises:
      ValueError: an empty batch, or shapes that do not fit a dense layer.
      TypeError: non-floating inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from genjax.autoencoders import sigmoid_contractive_penalty
      >>> h = jnp.full((3, 2), 0.5)  # slope 1/4 per unit
      >>> float(sigmoid_contractive_penalty(h, jnp.ones((4, 2))))  # 2 units * (1/16) * 4
      0.5

    References:
      Rifai et al., "Contractive auto-encoders", ICML 2011, section 3.
    """
    hidden = _checks.float_array(hidden, "hidden")
    if hidden.ndim != 2:
        raise ValueError(f"`hidden` must be a batch of codes [B, H], got shape {hidden.shape}")
    _checks.batched(hidden, "hidden", "the contractive penalty (a mean over the batch)")
    kernel = _checks.float_array(kernel, "kernel")
    if kernel.ndim != 2:
        raise ValueError(f"`kernel` must be a dense layer's weights [D, H], got shape {kernel.shape}")
    if hidden.shape[-1] != kernel.shape[1]:
        raise ValueError(f"`hidden` must have shape [B, H] with H = kernel.shape[1] = {kernel.shape[1]}, "
                         f"got hidden.shape={hidden.shape}")
    return jnp.mean(dense_jacobian_norm_sq(hidden * (1.0 - hidden), kernel))
