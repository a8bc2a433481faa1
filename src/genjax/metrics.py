"""Sample-quality metrics: Frechet distance (FID) and kernel inception distance (KID).

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
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "fid",
    "kid",
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
