"""GAN objectives, the WGAN family, the improved-training techniques and mode-coverage metrics.

Pure functions of arrays (JAX only): logits or critic scores in, scalar means out where the
literature defines a scalar objective. Every loss is written with `softplus` / `log_sigmoid`, so
logits of +-1e4 give finite values and finite gradients, and +-inf logits their limits (a
perfect discriminator's loss is 0; a fooled one's +inf), never NaN.

Arguments are checked at trace time by the shared `genjax._checks` policy: real arrays accept
floating, integer and boolean dtypes (the latter two become the default float); complex,
string and None arguments are a TypeError naming the argument; keys are never defaulted
(`jax.random.key(seed)` or a legacy `uint32[2]` key); static numbers (label smoothing, targets,
bounds, decays, noise levels, thresholds) given as Python numbers are checked against their
domain (NaN included: ValueError; strings and booleans: TypeError), traced ones are used as
given (each docstring says what an out-of-domain traced value does); static integers are
Python ints. Pytrees of parameters must have floating leaves (the message names the leaf's
path). Reductions over half-precision inputs (gradient norms, feature means, distances) run in
float32; the losses and penalties are returned in the input dtype, `mode_metrics`' fractions
and reverse KL in float32.

The minimax game (Goodfellow et al. 2014), with D(x) = sigmoid(logit(x)):

    V(G, D) = E_{x ~ p_r} log D(x) + E_{z ~ p_z} log(1 - D(G(z)))

* `discriminator_loss` = -V (the discriminator's loss), with one-sided label smoothing.
* `generator_loss`: the non-saturating -E log D(G(z)) (default), or the minimax
  E log(1 - D(G(z))) (`saturating=True`), whose gradient vanishes when D rejects the fakes.
* `minimax_value` = V; `optimal_discriminator` = p_r / (p_r + p_g), at which
  V(G, D*) = 2 JS(p_r || p_g) - 2 log 2.
* WGAN (Arjovsky et al. 2017): `wasserstein_critic_loss`, `wasserstein_generator_loss`,
  `clip_weights`; WGAN-GP (Gulrajani et al. 2017): `gradient_penalty`.
* Improved techniques (Salimans et al. 2016): `feature_matching_loss`, historical averaging
  (`HistoricalAverage`, `historical_average_init`, `historical_average_update`,
  `historical_average_penalty`); instance noise (Sonderby et al. 2017, Arjovsky & Bottou 2017):
  `instance_noise`, `annealed_noise_std`; packing (PacGAN, Lin et al. 2018): `pack`.
* The mode-collapse benchmark on the 2-D ring and grid (PacGAN, VEEGAN): `mode_metrics`.

References:
    I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014.
    T. Salimans et al., "Improved techniques for training GANs", NeurIPS 2016.
    M. Arjovsky, L. Bottou, "Towards principled methods for training generative adversarial
    networks", ICLR 2017.
    M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein generative adversarial networks", ICML 2017.
    I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017.
    C. K. Sonderby et al., "Amortised MAP inference for image super-resolution", ICLR 2017
    (instance noise).
    Z. Lin, A. Khetan, G. Fanti, S. Oh, "PacGAN: the power of two samples in generative
    adversarial networks", NeurIPS 2018.
    A. Srivastava et al., "VEEGAN: reducing mode collapse in GANs using implicit variational
    learning", NeurIPS 2017.
    L. Weng, "From GAN to WGAN", arXiv:1904.08994, 2019.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from genjax import _checks, _numerics

__all__ = [
    "HistoricalAverage",
    "annealed_noise_std",
    "clip_weights",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_loss",
    "gradient_penalty",
    "historical_average_init",
    "historical_average_penalty",
    "historical_average_update",
    "instance_noise",
    "minimax_value",
    "mode_metrics",
    "optimal_discriminator",
    "pack",
    "r1_penalty",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]

PyTree = Any


# --------------------------------------------------------------------------------------------
# Validation helpers (static: they look at shapes, dtypes and Python numbers only); the shared
# checks and their policy for integers, keys and static numbers are in genjax._checks.
# --------------------------------------------------------------------------------------------


def _scores(x: ArrayLike, name: str) -> jax.Array:
    """Logits or critic scores: any shape, one entry per sample ([B] or [B, 1] typically)."""
    arr = _checks.float_array(x, name)
    _checks.non_empty(arr, name)
    return arr


def _batch_leading(x: ArrayLike, name: str) -> jax.Array:
    arr = _checks.float_array(x, name)
    _checks.batched(arr, name)
    return arr


def _float_leaves(tree: PyTree, name: str) -> list[tuple[str, jax.Array]]:
    """(path, leaf) of a pytree of floating arrays; a TypeError names the first other leaf."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        where = f"{name}{jax.tree_util.keystr(path)}"
        arr = _checks.real_array(leaf, where)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(
                f"`{where}` must be a floating array, got dtype {arr.dtype} (integer and "
                "boolean leaves are not trainable parameters)"
            )
        out.append((where, arr))
    return out


def _matching_leaves(state: "HistoricalAverage", params: PyTree) -> tuple[list, list, Any]:
    """The leaves of `params` and of `state.average`, which must agree in structure, shape, dtype."""
    if not isinstance(state, HistoricalAverage):
        raise TypeError(f"`state` must be a HistoricalAverage, got {type(state).__name__}")
    want, got = jax.tree.structure(state.average), jax.tree.structure(params)
    if want != got:
        raise ValueError(
            "`params` must have the structure of the historical average's parameters, got "
            f"{got} for {want}"
        )
    avg = _float_leaves(state.average, "state.average")
    cur = _float_leaves(params, "params")
    for (_, a), (where, p) in zip(avg, cur):
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(
                f"`{where}` has shape {p.shape} and dtype {p.dtype}, but the historical average "
                f"holds shape {a.shape} and dtype {a.dtype} there (no broadcasting, no casting)"
            )
    return [a for _, a in avg], [p for _, p in cur], want


# --------------------------------------------------------------------------------------------
# The minimax game.
# --------------------------------------------------------------------------------------------


def discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike, label_smoothing: float | ArrayLike = 0.0) -> jax.Array:
    """The discriminator's loss -V(G, D), from logits, with one-sided label smoothing.

        L_D = -E_x [(1 - a) log D(x) + a log(1 - D(x))] - E_z log(1 - D(G(z)))

    with `D = sigmoid(logit)`, so `-log D = softplus(-logit)` and `-log(1 - D) = softplus(logit)`.
    `a = label_smoothing` replaces the real target 1 by 1 - a (Salimans et al. 2016 use 0.9, i.e.
    a = 0.1); the fake target stays 0 ("one-sided": smoothing it would reward the generator's
    mistakes). With a = 0 this is -`minimax_value`.

    Args:
      real_logits: discriminator logits of real samples, any shape (typically [B] or [B, 1]).
      fake_logits: logits of generated samples, any shape (its own batch size).
      label_smoothing: a in [0, 1): a Python number (checked), or a scalar array (traced values
        are used as given; outside [0, 1) they make the real term reward the wrong label).

    Returns:
      Scalar: the sum of the two batch means.

    Raises:
      ValueError: an empty batch, or `label_smoothing` outside [0, 1) (NaN included).
      TypeError: complex, string or None logits; a string or boolean `label_smoothing`.

    Examples:
      >>> float(discriminator_loss(jnp.zeros(4), jnp.zeros(4)))  # D = 1/2 everywhere: 2 log 2
      1.386...

    References:
      Goodfellow et al. 2014, eq. 1; Salimans et al. 2016, section 3.4.
    """
    real = _scores(real_logits, "real_logits")
    fake = _scores(fake_logits, "fake_logits")
    a = _checks.number(label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True)
    a = jnp.asarray(a, real.dtype)
    # -log-likelihood; the smoothing term is exactly 0 for a = 0, also at real = +inf (a perfect
    # discriminator's loss is 0, not 0 * inf = NaN).
    smooth = a * jnp.where((a == 0) & (real == jnp.inf), 0.0, _numerics.softplus(real))
    real_term = (1.0 - a) * _numerics.softplus(-real) + smooth
    return jnp.mean(real_term) + jnp.mean(_numerics.softplus(fake))


def generator_loss(fake_logits: ArrayLike, saturating: bool = False) -> jax.Array:
    """The generator's loss, from the discriminator's logits of generated samples.

    * non-saturating (default): `-E_z log D(G(z)) = E softplus(-logit)`. Its gradient is large
      exactly where D confidently rejects a sample, so the generator learns early in training.
    * saturating (`saturating=True`): the minimax `E_z log(1 - D(G(z))) = -E softplus(logit)`.
      Its gradient with respect to a logit is `-sigmoid(logit)`, which vanishes when D rejects the
      sample (logit -> -inf): the vanishing-gradient problem of Goodfellow et al. 2014, section 3.

    Args:
      fake_logits: logits of generated samples, any shape.
      saturating: which of the two losses (a static Python bool).

    Returns:
      Scalar, the batch mean.

    Examples:
      >>> float(generator_loss(jnp.zeros(3)))  # log 2
      0.693...
      >>> float(generator_loss(jnp.zeros(3), saturating=True))  # log(1/2)
      -0.693...

    References:
      Goodfellow et al. 2014, section 3; Arjovsky & Bottou 2017, section 2.2.
    """
    fake = _scores(fake_logits, "fake_logits")
    if not isinstance(saturating, bool):
        raise TypeError(f"`saturating` must be a Python bool, got {saturating!r}")
    if saturating:
        return -jnp.mean(_numerics.softplus(fake))
    return jnp.mean(_numerics.softplus(-fake))


def minimax_value(real_logits: ArrayLike, fake_logits: ArrayLike) -> jax.Array:
    """The value of the minimax game, V(G, D) = E_x log D(x) + E_z log(1 - D(G(z))).

    At the optimal discriminator D* = p_r / (p_r + p_g) it equals 2 JS(p_r || p_g) - 2 log 2,
    in [-2 log 2, 0] (Goodfellow et al. 2014, theorem 1).

    Args:
      real_logits: logits of real samples, any shape.
      fake_logits: logits of generated samples, any shape.

    Returns:
      Scalar (nats).

    Examples:
      >>> float(minimax_value(jnp.zeros(2), jnp.zeros(5)))  # -2 log 2
      -1.386...
    """
    real = _scores(real_logits, "real_logits")
    fake = _scores(fake_logits, "fake_logits")
    return -jnp.mean(_numerics.softplus(-real)) - jnp.mean(_numerics.softplus(fake))


def optimal_discriminator(p_real: ArrayLike, p_gen: ArrayLike) -> jax.Array:
    """The optimal discriminator for a fixed generator, D*(x) = p_r(x) / (p_r(x) + p_g(x)).

    Elementwise on densities or probabilities evaluated at the same points. Where both are 0 the
    ratio is undefined and D* is irrelevant to V (neither expectation sees the point); this
    returns 1/2 there, the discriminator that cannot tell, with zero gradient. (NaN would be
    as defensible, but would poison any mean over a grid that leaves both supports.) The
    derivative is computed as ((1 - D*) dp_r - D* dp_g) / (p_r + p_g), so tiny densities
    (1e-30) do not overflow it.

    Args:
      p_real: p_r at some points, any shape; finite and >= 0.
      p_gen: p_g at the same points, the same shape; finite and >= 0.

    Returns:
      D*, the shape of the inputs, in [0, 1]. Traced inputs are not checked: where an entry
      is negative or not finite, D* is NaN (never a plausible-looking value such as -1).

    Raises:
      ValueError: if the shapes differ, or a concrete (not traced) input has a negative, NaN
        or infinite entry.
      TypeError: complex, string or None inputs.

    Examples:
      >>> optimal_discriminator(jnp.array([1.0, 0.0, 3.0]), jnp.array([1.0, 2.0, 1.0]))
      Array([0.5 , 0.  , 0.75], dtype=float32)

    References:
      Goodfellow et al. 2014, proposition 1.
    """
    pr = _checks.float_array(p_real, "p_real")
    pg = _checks.float_array(p_gen, "p_gen")
    _checks.same_shape(pr, pg, "p_real", "p_gen")
    for arr, name in ((pr, "p_real"), (pg, "p_gen")):
        if _checks.is_concrete(arr) and arr.size and not bool(jnp.all(jnp.isfinite(arr) & (arr >= 0))):
            bad = arr[~(jnp.isfinite(arr) & (arr >= 0))][0]
            raise ValueError(f"`{name}` must be densities: finite and >= 0, got an entry {float(bad)!r}")
    return _optimal_discriminator_kernel(pr, pg)


@_checks.kernel()
def _optimal_discriminator_kernel(pr, pg):
    valid = jnp.isfinite(pr) & jnp.isfinite(pg) & (pr >= 0) & (pg >= 0)
    total = pr + pg
    ok = valid & (total > 0)
    d = _numerics.ratio(jnp.where(ok, pr, 0.5), jnp.where(ok, total, 1.0))
    return jnp.where(ok, d, jnp.where(valid, 0.5, jnp.nan))


# --------------------------------------------------------------------------------------------
# WGAN and WGAN-GP.
# --------------------------------------------------------------------------------------------


def wasserstein_critic_loss(real_scores: ArrayLike, fake_scores: ArrayLike) -> jax.Array:
    """The WGAN critic's loss, E_z f(G(z)) - E_x f(x) (minimized by the critic f).

    Its negative, E f(x) - E f(G(z)), is the critic's estimate of the Wasserstein-1 distance
    (Kantorovich-Rubinstein duality) when f is 1-Lipschitz; weight clipping (`clip_weights`) or
    the gradient penalty (`gradient_penalty`) keep it (roughly) so.

    Args:
      real_scores: critic scores (unbounded reals, no sigmoid) of real samples, any shape.
      fake_scores: critic scores of generated samples, any shape.

    Returns:
      Scalar.

    References:
      Arjovsky, Chintala, Bottou 2017, algorithm 1.
    """
    real = _scores(real_scores, "real_scores")
    fake = _scores(fake_scores, "fake_scores")
    return jnp.mean(fake) - jnp.mean(real)


def wasserstein_generator_loss(fake_scores: ArrayLike) -> jax.Array:
    """The WGAN generator's loss, -E_z f(G(z)).

    Args:
      fake_scores: critic scores of generated samples, any shape.

    Returns:
      Scalar.
    """
    return -jnp.mean(_scores(fake_scores, "fake_scores"))


def _safe_norm(g: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """||g|| over `axes`, with gradient 0 (not NaN) where g == 0; in at least float32, so that
    the sum of squares of half-precision gradients does not overflow float16."""
    g = g.astype(_checks.compute_dtype(g))
    sq = jnp.sum(jnp.square(g), axis=axes)
    nz = sq > 0
    return jnp.where(nz, jnp.sqrt(jnp.where(nz, sq, 1.0)), 0.0)


def _input_gradients(critic_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """grad_x of each example's score, [B, ...]: the gradient of the batch sum (the critic must
    score the examples independently for this to be per-example)."""
    if not callable(critic_fn):
        raise TypeError(f"`critic_fn` must be a callable batch -> scores, got {type(critic_fn).__name__}")
    b = x.shape[0]

    def total_score(x):
        s = jnp.asarray(critic_fn(x))
        if s.shape not in ((b,), (b, 1)):
            raise ValueError(f"`critic_fn` must return one score per example, [{b}] or [{b}, 1]; got {s.shape}")
        return jnp.sum(s)

    return jax.grad(total_score)(x)


def gradient_penalty(
    key: ArrayLike,
    critic_fn: Callable[[jax.Array], jax.Array],
    real: ArrayLike,
    fake: ArrayLike,
    target: float | ArrayLike = 1.0,
) -> jax.Array:
    """The WGAN-GP penalty E[(||grad_x critic(x_hat)||_2 - target)^2] on random interpolates.

        x_hat = eps * x + (1 - eps) * G(z),   eps ~ U[0, 1] per example

    The gradient is taken per example over all of its non-batch axes (so the critic must score
    each example independently: no batch norm or minibatch discrimination in a WGAN-GP critic).
    Multiply by lambda (10 in Gulrajani et al.) yourself. Differentiable with respect to the
    critic's parameters (through `critic_fn`'s closure), which is the point: the critic is trained
    to keep its gradient norm near `target`.

    Args:
      key: PRNG key for eps (`jax.random.key(seed)`, or a legacy `uint32[2]` key).
      critic_fn: maps a batch [B, ...] to scores [B] or [B, 1].
      real: real samples [B, ...].
      fake: generated samples, the same shape (pass `stop_gradient` samples for the critic step).
      target: the norm the penalty pulls towards (1 for 1-Lipschitz critics), a finite number
        >= 0 (a traced value is used as given).

    Returns:
      Scalar: the batch mean of the squared deviations, computed in at least float32 and
      returned in the samples' dtype.

    Raises:
      ValueError: `real` and `fake` differ in shape or are not batches, the critic's output is
        not one score per example, or `target` is negative, NaN or infinite.
      TypeError: `key` is not a PRNG key (None included), `critic_fn` is not callable, or an
        argument has a non-real dtype.

    Examples:
      >>> w = jnp.array([3.0, 4.0])
      >>> x = jnp.ones((8, 2))
      >>> float(gradient_penalty(jax.random.key(0), lambda b: b @ w, x, -x))  # (||w|| - 1)^2
      16.0

    References:
      Gulrajani et al. 2017, algorithm 1 and eq. 3.
    """
    key = _checks.key(key)
    real = _batch_leading(real, "real")
    fake = _batch_leading(fake, "fake")
    _checks.same_shape(real, fake, "real", "fake")
    target = _checks.number(target, "target", 0.0, None)
    dtype = _checks.out_dtype(real, fake)
    b = real.shape[0]
    eps = jax.random.uniform(key, (b,) + (1,) * (real.ndim - 1), dtype=dtype)
    x_hat = eps * real + (1.0 - eps) * fake
    grads = _input_gradients(critic_fn, x_hat)  # [B, ...]
    norms = _safe_norm(grads, tuple(range(1, grads.ndim)))  # [B], at least float32
    return jnp.mean(jnp.square(norms - jnp.asarray(target, norms.dtype))).astype(dtype)


def r1_penalty(critic_fn: Callable[[jax.Array], jax.Array], real: ArrayLike) -> jax.Array:
    """The zero-centred gradient penalty on real data, R1 = E_x ||grad_x D(x)||_2^2.

    Mescheder et al. (2018) show that the non-saturating GAN with this penalty converges locally
    where the plain game oscillates; add (gamma / 2) * R1 to the discriminator's loss. Unlike the
    WGAN-GP penalty it pulls the gradient towards 0 (not 1) and only on real samples, so the
    discriminator is flat on the data's support and the generator is not pushed off a mode it
    already covers. As with `gradient_penalty`, the critic must score examples independently.

    Args:
      critic_fn: maps a batch [B, ...] to logits [B] or [B, 1].
      real: real samples [B, ...].

    Returns:
      Scalar: the batch mean of the squared gradient norms, computed in at least float32 and
      returned in the samples' dtype.

    Raises:
      ValueError: `real` is not a batch, or the critic's output is not one score per example.
      TypeError: `critic_fn` is not callable, or `real` has a non-real dtype.

    Examples:
      >>> w = jnp.array([3.0, 4.0])
      >>> float(r1_penalty(lambda b: b @ w, jnp.ones((8, 2))))  # ||w||^2
      25.0

    References:
      Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs do actually converge?",
      eq. 9.
    """
    real = _batch_leading(real, "real")
    grads = _input_gradients(critic_fn, real)
    g = grads.astype(_checks.compute_dtype(grads)).reshape(real.shape[0], -1)
    return jnp.mean(jnp.sum(jnp.square(g), axis=1)).astype(real.dtype)


def clip_weights(params: PyTree, c: float | ArrayLike) -> PyTree:
    """Clips every parameter of a pytree to [-c, c] (the WGAN critic's Lipschitz constraint).

    Args:
      params: a pytree of floating arrays (the critic's parameters).
      c: the clipping bound, a finite number > 0 (0.01 in Arjovsky et al. 2017). A traced
        scalar is used as given (for c <= 0 every weight becomes c: `jnp.clip` with lo > hi).

    Returns:
      A pytree of the same structure, dtypes and shapes.

    Raises:
      ValueError: `c` is not a finite positive number (NaN, inf, 0, negative).
      TypeError: `c` is a string or a boolean, or a leaf of `params` is not a floating array
        (the message names its path). Integer leaves are rejected rather than left unchanged:
        clipping them to the integer part of c (0 for c < 1) zeroed them silently, and leaving
        them unclipped would silently break the Lipschitz bound the clipping exists for.

    Examples:
      >>> clip_weights({"w": jnp.array([-1.0, 0.005, 2.0])}, 0.01)["w"]
      Array([-0.01 ,  0.005,  0.01 ], dtype=float32)
    """
    c = _checks.number(c, "c", 0.0, None, low_open=True)
    leaves = [p for _, p in _float_leaves(params, "params")]
    treedef = jax.tree.structure(params)
    clipped = [jnp.clip(p, -jnp.asarray(c, p.dtype), jnp.asarray(c, p.dtype)) for p in leaves]
    return jax.tree.unflatten(treedef, clipped)


# --------------------------------------------------------------------------------------------
# Improved techniques for training GANs (Salimans et al. 2016) and instance noise.
# --------------------------------------------------------------------------------------------


def feature_matching_loss(real_features: ArrayLike, fake_features: ArrayLike) -> jax.Array:
    """Feature matching: ||E_x f(x) - E_z f(G(z))||_2^2 on an intermediate discriminator layer f.

    The generator minimizes it instead of (or beside) fooling the discriminator's output; the
    discriminator is trained as usual. Pass `stop_gradient(real_features)` or not: only the
    generator's parameters are updated with it.

    Args:
      real_features: f of real samples [B, ...] (the statistics are means over the batch axis).
      fake_features: f of generated samples [B', ...], the same feature shape.

    Returns:
      Scalar: the squared Euclidean distance of the two batch means, summed over features,
      computed in at least float32 and returned in the features' promoted dtype.

    Raises:
      ValueError: different feature shapes, or an empty batch.
      TypeError: complex, string or None features.

    References:
      Salimans et al. 2016, section 3.1.
    """
    real = _batch_leading(real_features, "real_features")
    fake = _batch_leading(fake_features, "fake_features")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"`real_features` and `fake_features` must have the same feature shape, got {real.shape} and {fake.shape}"
        )
    out = _checks.out_dtype(real, fake)
    compute = _checks.compute_dtype(out)
    diff = jnp.mean(real.astype(compute), axis=0) - jnp.mean(fake.astype(compute), axis=0)
    return jnp.sum(jnp.square(diff)).astype(out)


class HistoricalAverage(NamedTuple):
    """The running average of past parameters, as explicit training state (a pytree).

    Attributes:
      average: a pytree like the parameters: (1/t) sum_{i=1..t} theta_i, or an exponential moving
        average if updated with a `decay`.
      count: int32 scalar t, the number of parameter values averaged.
    """

    average: PyTree
    count: jax.Array  # [] int32


def historical_average_init(params: PyTree) -> HistoricalAverage:
    """Starts the historical average at the initial parameters (t = 1).

    Args:
      params: the initial parameters (any pytree of floating arrays).

    Returns:
      A `HistoricalAverage` whose average is `params` (as JAX arrays) and whose count is 1.

    Raises:
      TypeError: a leaf is not a floating array (a running mean of integers would be truncated
        to the initial value); the message names its path.
    """
    leaves = [p for _, p in _float_leaves(params, "params")]
    average = jax.tree.unflatten(jax.tree.structure(params), leaves)
    return HistoricalAverage(average, jnp.ones((), jnp.int32))


def historical_average_update(
    state: HistoricalAverage, params: PyTree, decay: float | None = None
) -> HistoricalAverage:
    """Adds the current parameters to the historical average.

    With `decay=None` the exact running mean: avg_{t+1} = avg_t + (theta - avg_t) / (t + 1).
    With a float `decay` in [0, 1] an exponential moving average
    avg <- decay * avg + (1 - decay) * theta (a common variant that forgets the distant past;
    `decay=1` keeps the average fixed, `decay=0` replaces it by theta). The update is computed
    in at least float32 and stored in each leaf's dtype.

    Args:
      state: the current `HistoricalAverage`.
      params: the current parameters: the structure, leaf shapes and leaf dtypes of
        `state.average` (nothing is broadcast or cast silently).
      decay: None, or the EMA decay: a Python number in [0, 1] (checked) or a scalar array
        (traced values are used as given).

    Returns:
      The new `HistoricalAverage` (count + 1).

    Raises:
      ValueError: a different tree structure, or a leaf of another shape or dtype (the message
        names the leaf's path); `decay` outside [0, 1] or NaN.
      TypeError: `state` is not a `HistoricalAverage`, a leaf is not a floating array, or
        `decay` is a string or a boolean.
    """
    if decay is not None:
        decay = _checks.number(decay, "decay", 0.0, 1.0)
    avg, cur, treedef = _matching_leaves(state, params)
    count = state.count + 1
    if decay is None:
        w = 1.0 / count.astype(jnp.float32)

        def update(a, p):
            c = _checks.compute_dtype(a)
            a32, p32 = a.astype(c), p.astype(c)
            return (a32 + (p32 - a32) * w.astype(c)).astype(a.dtype)
    else:

        def update(a, p):
            c = _checks.compute_dtype(a)
            d = jnp.asarray(decay, c)
            return (d * a.astype(c) + (1.0 - d) * p.astype(c)).astype(a.dtype)

    average = jax.tree.unflatten(treedef, [update(a, p) for a, p in zip(avg, cur)])
    return HistoricalAverage(average, count)


def historical_average_penalty(params: PyTree, state: HistoricalAverage) -> jax.Array:
    """Historical averaging: ||theta - (1/t) sum_{i=1..t} theta_i||_2^2, summed over all leaves.

    The average is state (a `stop_gradient` constant); the gradient pulls theta towards it,
    damping the oscillations of the two-player game. Multiply by a weight yourself.

    Args:
      params: the current parameters.
      state: the `HistoricalAverage` of past parameters.

    Returns:
      Scalar (float32, or float64 for float64 parameters).

    Raises:
      ValueError: a different tree structure, or a leaf of another shape or dtype than the
        average's (the message names the leaf's path).
      TypeError: `state` is not a `HistoricalAverage`, or a leaf is not a floating array.

    References:
      Salimans et al. 2016, section 3.3.
    """
    avg, cur, _ = _matching_leaves(state, params)
    total = jnp.zeros((), _checks.compute_dtype(*cur) if cur else jnp.float32)
    for p, a in zip(cur, avg):
        c = _checks.compute_dtype(p)
        total = total + jnp.sum(jnp.square(p.astype(c) - jax.lax.stop_gradient(a).astype(c)))
    return total


def instance_noise(key: ArrayLike, x: ArrayLike, std: float | ArrayLike) -> jax.Array:
    """Adds instance noise N(0, std^2) to a batch (apply it to real and generated samples alike).

    Blurring both distributions makes their supports overlap, so the discriminator cannot
    separate them perfectly and its gradients stay informative (Arjovsky & Bottou 2017,
    section 3.1; Sonderby et al. 2017, appendix C). Anneal `std` to 0 with `annealed_noise_std`.

    Args:
      key: PRNG key (`jax.random.key(seed)`, or a legacy `uint32[2]` key).
      x: a batch, any shape (an empty one is returned as is).
      std: the noise standard deviation: a finite Python number >= 0 (checked), or a scalar
        array (traced inside a train step; used as given, so a negative value flips the
        noise's sign, which has the same distribution).

    Returns:
      x + std * eps, the shape and dtype of x (integer or boolean x becomes the default float).

    Raises:
      ValueError: `std` is negative, NaN or infinite, or an array that is not a scalar.
      TypeError: `key` is not a PRNG key (None included), `std` is a string or a boolean, or
        `x` has a non-real dtype.
    """
    key = _checks.key(key)
    x = _checks.float_array(x, "x")
    std = _checks.number(std, "std", 0.0, None)
    return x + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype)


def annealed_noise_std(step: ArrayLike, initial_std: float, anneal_steps: int) -> jax.Array:
    """Linear annealing of the instance-noise level: initial_std * max(0, 1 - step / anneal_steps).

    Args:
      step: the training step, >= 0: a Python int or an integer array (traced inside a train
        step; a traced negative step gives `initial_std`, the value at step 0).
      initial_std: the noise at step 0, a finite number >= 0 (a traced scalar is used as given).
      anneal_steps: the step at which the noise reaches 0, a positive Python int.

    Returns:
      float32 scalar (or the shape of `step`).

    Raises:
      ValueError: a negative concrete `step`, a negative/NaN/infinite `initial_std`, or
        `anneal_steps` < 1.
      TypeError: a non-integer `step` (floats are not truncated), a string or boolean
        `initial_std`, or an `anneal_steps` that is not a Python int (2.5, True).
    """
    step = _checks.int_array(step, "step")
    _checks.int_in_range(step, "step", 0, int(jnp.iinfo(step.dtype).max) + 1)
    initial_std = _checks.number(initial_std, "initial_std", 0.0, None)
    anneal_steps = _checks.positive_int(anneal_steps, "anneal_steps")
    frac = step.astype(jnp.float32) / float(anneal_steps)
    return jnp.asarray(initial_std, jnp.float32) * jnp.clip(1.0 - frac, 0.0, 1.0)


def pack(x: ArrayLike, num_packed: int) -> jax.Array:
    """PacGAN's packing: groups of `num_packed` consecutive samples become one discriminator input.

    [B, d_1, ..., d_k] -> [B / m, m * d_1, d_2, ..., d_k]: the samples of a pack are concatenated
    along the first feature axis (for vectors, [B, d] -> [B / m, m d]). A packed discriminator
    judges m samples jointly, which penalizes a generator that drops modes (Lin et al. 2018).

    Args:
      x: a batch [B, ...] with at least one feature axis; B >= 1 divisible by `num_packed`.
      num_packed: m >= 1, a Python int (static; 2.0 and True are a TypeError).

    Returns:
      The packed batch (integer or boolean x becomes the default float).

    Raises:
      ValueError: an empty batch, no feature axis, `num_packed` < 1, or B not divisible by it.
      TypeError: `num_packed` is not a Python int, or `x` has a non-real dtype.

    Examples:
      >>> pack(jnp.arange(8.0).reshape(4, 2), 2)
      Array([[0., 1., 2., 3.],
             [4., 5., 6., 7.]], dtype=float32)
    """
    x = _batch_leading(x, "x")
    num_packed = _checks.positive_int(num_packed, "num_packed")
    if x.ndim < 2:
        raise ValueError(f"`x` must be [B, features...], got shape {x.shape}")
    b = x.shape[0]
    if b % num_packed:
        raise ValueError(f"the batch size {b} of `x` is not divisible by num_packed={num_packed}")
    m = int(num_packed)
    # [B, d1, ...] -> [B/m, m, d1, ...] -> [B/m, m * d1, ...] (sample j of a pack at rows j*d1..)
    grouped = x.reshape((b // m, m) + x.shape[1:])
    return grouped.reshape((b // m, m * x.shape[1]) + x.shape[2:])


# --------------------------------------------------------------------------------------------
# The mode-collapse benchmark.
# --------------------------------------------------------------------------------------------


def mode_metrics(samples: ArrayLike, modes: ArrayLike, std: float | ArrayLike, threshold: float = 3.0) -> dict[str, jax.Array]:
    """Mode coverage and sample quality of samples from a mixture of isotropic Gaussians.

    The protocol of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018, section 5):

    * a sample is *high quality* if its Euclidean distance to the nearest mode is at most
      `threshold` standard deviations (3 std);
    * a mode is *captured* if it is the nearest mode of at least one high-quality sample;
    * the *reverse KL* is KL(q || u) = sum_k q_k log(q_k K) between the histogram q of the
      high-quality samples over their nearest modes and the uniform distribution u over the K
      modes (missing modes contribute 0; a single captured mode gives log K).

    For exact samples of the ring or grid, the high-quality fraction is P(chi_2 <= 3) =
    1 - exp(-9/2) = 98.9%, and the reverse KL of a finite sample is about (K - 1) / (2 N_hq)
    (e.g. 0.005 for the grid with 2,500 samples).

    Args:
      samples: [N, D] samples, N >= 1 (NaN samples are never of high quality).
      modes: [K, D] the mixture's means, K >= 1.
      std: the per-coordinate standard deviation of every component: a finite Python number
        > 0 (checked), or a scalar array (traced values are used as given: with std <= 0 no
        sample but an exact hit is of high quality).
      threshold: the high-quality radius in standard deviations, a finite number > 0.

    Returns:
      A dict of arrays:
        "high_quality": [] the fraction of high-quality samples, in [0, 1];
        "modes_captured": [] int32, the number of captured modes;
        "reverse_kl": [] KL(q || uniform) in nats (+inf if no sample is of high quality);
        "mode_histogram": [K] int32, high-quality samples per mode;
        "nearest_mode": [N] int32, each sample's nearest mode;
        "is_high_quality": [N] bool.
      Pure JAX: jit and vmap (e.g. over seeds) apply. Distances are computed in at least
      float32 (half-precision coordinates would overflow their squares).

    Raises:
      ValueError: shapes other than [N, D] and [K, D] with one D, no samples or no modes, or a
        `std`/`threshold` that is not a finite positive number.
      TypeError: non-real inputs, or a string or boolean `std`/`threshold`.

    Examples:
      >>> m = mode_metrics(jnp.array([[1.0, 0.0], [0.0, 1.02], [5.0, 5.0]]),
      ...                  jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), std=0.01)
      >>> float(m["high_quality"]), int(m["modes_captured"])
      (0.666..., 2)

    References:
      Srivastava et al. 2017, section 5.1; Lin et al. 2018, section 5 and table 1.
    """
    x = _checks.float_array(samples, "samples")
    mu = _checks.float_array(modes, "modes")
    if x.ndim != 2 or mu.ndim != 2 or x.shape[1] != mu.shape[1]:
        raise ValueError(f"`samples` must be [N, D] and `modes` [K, D] with the same D, got {x.shape} and {mu.shape}")
    _checks.batched(x, "samples", "the fractions are over the samples")
    _checks.batched(mu, "modes", "there is no nearest mode")
    std = _checks.number(std, "std", 0.0, None, low_open=True)
    threshold = _checks.number(threshold, "threshold", 0.0, None, low_open=True)
    compute = _checks.compute_dtype(x, mu)
    x, mu = x.astype(compute), mu.astype(compute)
    k = mu.shape[0]
    d2 = jnp.sum(jnp.square(x[:, None, :] - mu[None, :, :]), axis=-1)  # [N, K]
    nearest = jnp.argmin(d2, axis=1).astype(jnp.int32)  # [N]
    dist = jnp.sqrt(jnp.min(d2, axis=1))  # [N]
    hq = dist <= jnp.asarray(threshold, dist.dtype) * jnp.asarray(std, dist.dtype)  # [N]
    hist = jnp.sum(jax.nn.one_hot(nearest, k, dtype=jnp.int32) * hq[:, None].astype(jnp.int32), axis=0)  # [K]
    n_hq = jnp.sum(hist)
    q = hist.astype(dist.dtype) / jnp.maximum(n_hq, 1).astype(dist.dtype)
    nz = q > 0
    kl_terms = jnp.where(nz, q * jnp.log(jnp.where(nz, q, 1.0) * k), 0.0)
    reverse_kl = jnp.where(n_hq > 0, jnp.sum(kl_terms), jnp.inf)
    return {
        "high_quality": jnp.mean(hq.astype(dist.dtype)),
        "modes_captured": jnp.sum(hist > 0).astype(jnp.int32),
        "reverse_kl": reverse_kl,
        "mode_histogram": hist,
        "nearest_mode": nearest,
        "is_high_quality": hq,
    }
