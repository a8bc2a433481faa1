"""Sample-quality metrics: Frechet distance (FID), kernel inception distance (KID), and
precision, recall, density and coverage (`prdc`).

Both compare two sets of feature vectors. On MNIST genjax uses the penultimate features of its
own classifier (`experiments/mnist_classifier.py`, `genjax.nn.MnistClassifier.features`), so the
numbers are an "MNIST-feature FID/KID": comparable between models evaluated with the same
classifier, not with Inception-feature FIDs from papers.

Statistics are computed on the host in float64 NumPy: the matrix square root in the Frechet
distance loses several digits in float32 for feature dimensions in the hundreds.

References:
    M. Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
    equilibrium", NeurIPS 2017 (FID).
    M. Binkowski et al., "Demystifying MMD GANs", ICLR 2018 (KID: the unbiased MMD^2 with the
    kernel k(x, y) = (x.y / d + 1)^3, averaged over subsets).
    T. Kynkaanniemi et al., "Improved Precision and Recall Metric for Assessing Generative
    Models", NeurIPS 2019 (k-NN precision and recall).
    M. F. Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020
    (density and coverage; the reference implementation is the `prdc` package, clovaai/generative-evaluation-prdc).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "fid",
    "kid",
    "prdc",
    "classifier_feature_fn",
]


def _features(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] array of feature vectors, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 feature vectors, got {x.shape[0]}")
    return x


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D] (float64)."""
    f = _features(features, "features")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

        d^2 = ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    The trace of the square root is computed as sum_i sqrt(lambda_i) over the eigenvalues of the
    symmetric PSD matrix sigma1^(1/2) sigma2 sigma1^(1/2) (which has the same eigenvalues as
    sigma1 sigma2), so no complex arithmetic or ill-conditioned `sqrtm` is involved.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[-1],) * 2:
        raise ValueError(f"inconsistent shapes: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)))
    d2 = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    return float(max(d2, 0.0))


def fid(features_a: Any, features_b: Any) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def kid(
    features_a: Any,
    features_b: Any,
    *,
    seed: int,
    num_subsets: int = 100,
    subset_size: int = 1000,
) -> tuple[float, float]:
    """KID: mean and standard deviation over random subsets of the unbiased MMD^2 estimate.

        k(x, y) = (x . y / d + 1)^3
        MMD^2_u = sum_{i != j} k(a_i, a_j) / (m (m - 1)) + sum_{i != j} k(b_i, b_j) / (m (m - 1))
                  - 2 sum_{i, j} k(a_i, b_j) / m^2

    Subsets of `min(subset_size, N, M)` rows are drawn without replacement with NumPy's
    generator seeded by `seed` (explicit: a metric must not silently reuse or vary its noise).
    The mean is unbiased for any subset size; a subset as large as both sets is the same in every
    draw, so choose `subset_size` below N and M for a meaningful std (it is 0 otherwise).
    """
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2.0 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def classifier_feature_fn(params: Any, features_dim: int | None = None, batch_size: int = 500) -> Callable:
    """`images -> features [N, D]` with a trained `genjax.nn.MnistClassifier`'s penultimate layer.

    Args:
        params: the classifier's parameters (e.g. `genjax.train.load_params(path)`).
        features_dim: the feature width; read from the parameters when None.
        batch_size: images per compiled call (`genjax.train.map_batched`: the last batch is
            padded, so there is one compiled shape, and no image is left out).
    Images are uint8 in [0, 255] or floats in [0, 1], [N, 28, 28, 1] (or [N, 28, 28]).
    """
    import jax

    from genjax import train
    from genjax.nn import MnistClassifier

    features_dim = features_dim or int(np.shape(params["dense"]["kernel"])[-1])
    num_classes = int(np.shape(params["head"]["kernel"])[-1])
    model = MnistClassifier(num_classes=num_classes, features_dim=features_dim)

    @train.jit
    def embed(x):
        return model.apply({"params": params}, x, method=model.features)

    def feature_fn(images: Any) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        return train.map_batched(embed, x, batch_size=batch_size)  # [N, D]

    return feature_fn


def prdc(real_features: Any, fake_features: Any, k: int = 3, *, chunk_size: int = 1024) -> dict[str, float]:
    """Precision and recall (k-NN manifolds) and density and coverage of fake against real features.

    With ``r_k(x)`` the distance from a real feature ``x`` to its ``k``-th nearest other real
    feature (and likewise ``r_k(y)`` among the fakes), ``N`` reals ``X`` and ``M`` fakes ``Y``
    (Euclidean distances, strict inequalities, exactly as the reference ``prdc`` package)::

        precision = 1/M sum_j [exists i: ||x_i - y_j|| < r_k(x_i)]     fakes on the real manifold
        recall    = 1/N sum_i [exists j: ||x_i - y_j|| < r_k(y_j)]     reals on the fake manifold
        density   = 1/(k M) sum_j sum_i [||x_i - y_j|| < r_k(x_i)]
        coverage  = 1/N sum_i [min_j ||x_i - y_j|| < r_k(x_i)]

    Precision measures fidelity (fakes that look real) and recall diversity (how much of the real
    distribution the fakes reach): a generator that covers only some modes of the data has high
    precision and low recall. (torch-fidelity had the two swapped, toshas/torch-fidelity issue
    #58; `tests/test_metrics_prdc.py` checks the orientation on Gaussian blobs.)

    Computed in JAX in tiles of ``chunk_size x chunk_size`` squared distances (never the full
    ``[N, M]`` or ``[N, N]`` matrix): the k-th neighbour radii with a running top-(k+1) over
    column tiles (the point itself, at distance 0, is the first of the k+1), then one pass over
    the real-fake tiles. Features are centred at the real mean and compared in float32 (float64
    under x64); only pairs within float32 rounding of a radius can be classified differently
    from a float64 computation.

    Args:
      real_features: ``[N, D]`` with ``N > k``.
      fake_features: ``[M, D]`` with ``M > k``.
      k: the neighbourhood size, a positive int (3 in Kynkaanniemi et al.; Naeem et al. use 5).
      chunk_size: rows and columns per tile, a positive int.

    Returns:
      ``{"precision", "recall", "density", "coverage"}`` as Python floats (density may exceed 1).

    Raises:
      ValueError: features not 2-D, different feature dimensions, ``N`` or ``M`` not above
        ``k``, ``k`` or ``chunk_size`` below 1.
      TypeError: non-int ``k`` or ``chunk_size``.

    Examples:
      >>> import numpy as np
      >>> from genjax import metrics
      >>> real = np.random.default_rng(0).normal(size=(200, 2))
      >>> scores = metrics.prdc(real, real, k=3)        # identical sets: everything is covered
      >>> scores["precision"], scores["recall"], scores["coverage"]
      (1.0, 1.0, 1.0)
    """
    import numbers

    for name, value in (("k", k), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"`{name}` must be a Python int, got {value!r}")
        if value < 1:
            raise ValueError(f"`{name}` must be at least 1, got {value}")
    real = np.asarray(real_features, dtype=np.float64)
    fake = np.asarray(fake_features, dtype=np.float64)
    for name, x in (("real_features", real), ("fake_features", fake)):
        if x.ndim != 2:
            raise ValueError(f"`{name}` must be a [N, D] array of feature vectors, got shape {x.shape}")
        if x.shape[0] <= k:
            raise ValueError(f"`{name}` needs more than k = {k} feature vectors, got {x.shape[0]}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real_features has {real.shape[1]}, fake_features {fake.shape[1]}")
    centre = real.mean(axis=0)
    size = int(min(chunk_size, max(len(real), len(fake))))
    counts = {name: int(v) for name, v in _prdc_kernel()(real - centre, fake - centre, int(k), size).items()}
    n, m = len(real), len(fake)
    return {"precision": counts["precision"] / m, "recall": counts["recall"] / n,
            "density": counts["density"] / (k * m), "coverage": counts["coverage"] / n}


_PRDC_KERNEL = None


def _prdc_kernel():
    """The jitted tiled computation, built on first use (so that importing this module stays light)."""
    global _PRDC_KERNEL
    if _PRDC_KERNEL is None:
        _PRDC_KERNEL = _build_prdc_kernel()
    return _PRDC_KERNEL


def _build_prdc_kernel():
    import functools

    import jax
    import jax.numpy as jnp

    highest = jax.lax.Precision.HIGHEST

    def pad(x, size):
        n = x.shape[0]
        total = -(-n // size) * size
        return jnp.pad(x, ((0, total - n), (0, 0))).reshape(total // size, size, x.shape[1]), n

    def sq_dist(a, b):  # [C, D], [C, D] -> [C, C]
        d2 = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :]
              - 2.0 * jnp.matmul(a, b.T, precision=highest))
        return jnp.maximum(d2, 0.0)

    def kth_radius(tiles, n, k):
        """Squared distance of every point to its k-th nearest other point of the same set: [T*C]."""
        num, size, _ = tiles.shape
        local = jnp.arange(size)

        def rows(ti):
            a = tiles[ti]

            def cols(best, tj):
                d2 = sq_dist(a, tiles[tj])
                col = tj * size + local
                d2 = jnp.where((ti * size + local)[:, None] == col[None, :], 0.0, d2)  # the point itself
                d2 = jnp.where((col < n)[None, :], d2, jnp.inf)  # padding
                merged = jnp.concatenate([best, d2], axis=1)
                return -jax.lax.top_k(-merged, k + 1)[0], None

            best0 = jnp.full((size, k + 1), jnp.inf, tiles.dtype)
            best, _ = jax.lax.scan(cols, best0, jnp.arange(num))
            return best[:, k]

        return jax.lax.map(rows, jnp.arange(num)).reshape(-1)

    @functools.partial(jax.jit, static_argnums=(2, 3))
    def kernel(real, fake, k, size):
        dtype = jnp.result_type(float)
        real_t, n = pad(jnp.asarray(real, dtype), size)
        fake_t, m = pad(jnp.asarray(fake, dtype), size)
        r_real = kth_radius(real_t, n, k).reshape(real_t.shape[:2])  # [Tn, C]
        r_fake = kth_radius(fake_t, m, k).reshape(fake_t.shape[:2])  # [Tm, C]
        local = jnp.arange(size)

        def over_real(counts, ti):
            a, ra = real_t[ti], r_real[ti]
            real_ok = (ti * size + local) < n

            def over_fake(carry, tj):
                recall_any, min_d2 = carry
                d2 = sq_dist(a, fake_t[tj])
                fake_ok = (tj * size + local) < m
                valid = real_ok[:, None] & fake_ok[None, :]
                in_real_ball = (d2 < ra[:, None]) & valid
                in_fake_ball = (d2 < r_fake[tj][None, :]) & valid
                recall_any = recall_any | jnp.any(in_fake_ball, axis=1)
                min_d2 = jnp.minimum(min_d2, jnp.min(jnp.where(valid, d2, jnp.inf), axis=1))
                return (recall_any, min_d2), jnp.sum(in_real_ball, axis=0, dtype=jnp.int32)

            init = (jnp.zeros((size,), bool), jnp.full((size,), jnp.inf, dtype))
            (recall_any, min_d2), fake_counts = jax.lax.scan(over_fake, init, jnp.arange(fake_t.shape[0]))
            covered = (min_d2 < ra) & real_ok
            return counts + fake_counts, (recall_any & real_ok, covered)

        counts0 = jnp.zeros(fake_t.shape[:2], jnp.int32)
        counts, (recall_any, covered) = jax.lax.scan(over_real, counts0, jnp.arange(real_t.shape[0]))
        counts = counts.reshape(-1)
        fake_ok = jnp.arange(counts.shape[0]) < m
        return {  # counts; the host divides them in float64
            "precision": jnp.sum((counts > 0) & fake_ok),
            "recall": jnp.sum(recall_any),
            "density": jnp.sum(jnp.where(fake_ok, counts, 0)),
            "coverage": jnp.sum(covered),
        }

    return kernel
