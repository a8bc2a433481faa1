"""genjax.metrics: the Frechet distance and KID against closed forms and direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from genjax import metrics


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    assert metrics.frechet_distance(np.ones(5), sigma, np.ones(5), sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    # For diagonal covariances (sigma1 sigma2)^(1/2) = diag(s1 s2), so
    # d^2 = ||mu1 - mu2||^2 + sum_i (s1_i - s2_i)^2 (Dowson & Landau 1982, commuting case).
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([0.3, 2.0, 1.5])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    got = metrics.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_random_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # reference: the textbook formula with scipy's general matrix square root
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy_linalg.sqrtm(s1 @ s2)))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def test_fid_of_samples_converges_to_the_gaussian_distance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200_000, 2))
    y = rng.normal(size=(200_000, 2)) * np.array([2.0, 1.0]) + np.array([1.0, 0.0])
    # N(0, I) vs N((1, 0), diag(4, 1)): 1 + (1 - 2)^2 = 2
    assert metrics.fid(x, y) == pytest.approx(2.0, abs=0.03)


def test_kid_is_unbiased_and_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 4))
    b = rng.normal(size=(300, 4))
    mean, _ = metrics.kid(a, b, seed=0, num_subsets=20, subset_size=300)
    assert abs(mean) < 0.05  # same distribution: the unbiased estimate is centred on 0

    # the formula written out for one subset equal to the whole sets
    k = lambda x, y: (x @ y.T / 4 + 1.0) ** 3
    m = 300
    direct = ((k(a, a).sum() - np.trace(k(a, a))) + (k(b + 1, b + 1).sum() - np.trace(k(b + 1, b + 1)))) / (
        m * (m - 1)) - 2 * k(a, b + 1).mean()
    got, std = metrics.kid(a, b + 1, seed=0, num_subsets=1, subset_size=300)
    assert got == pytest.approx(direct, rel=1e-10) and std == 0.0
    assert got > 0.5


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"features must be a \[N, D\]"):
        metrics.feature_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        metrics.kid(np.zeros((4, 2)), np.zeros((4, 3)), seed=0)


def test_classifier_feature_fn_shapes():
    import jax

    from genjax import nn

    model = nn.MnistClassifier(features_dim=8)
    params = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))["params"]
    fn = metrics.classifier_feature_fn(params, batch_size=4)
    images = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28, 1), dtype=np.uint8)
    f = fn(images)
    assert f.shape == (10, 8)
    np.testing.assert_allclose(fn(images.astype(np.float32) / 255.0), f, rtol=1e-6)  # uint8 and [0,1] agree
    # batches of 4 (the last one padded) give the features of the images embedded all at once
    whole = model.apply({"params": params}, images.astype(np.float32) / 255.0, method=model.features)
    np.testing.assert_allclose(f, whole, rtol=1e-5, atol=1e-6)
    assert fn(images[:0]).shape == (0, 8)
