"""genjax.metrics.prdc: precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem
et al. 2020) against the reference `prdc` package 0.2 (clovaai/generative-evaluation-prdc):
its outputs on stored features, recorded by `tests/parity/record_vq_extra.py` into
`tests/parity/vq_extra_peers.npz`, and the package itself where it is installed (skipped
otherwise; it is not a dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genjax import metrics

PEERS = np.load(Path(__file__).parent / "parity" / "vq_extra_peers.npz")


@pytest.mark.parametrize("k,chunk_size", [(3, 32), (5, 7)])
def test_prdc_equals_the_recorded_reference_package_in_tiles(k, chunk_size):
    """Tiles of 32 (4 x 3 of them for the 120 reals and 90 fakes) and of 7 (18 x 13), the last ones
    padded: the reference's values exactly (they are ratios of counts)."""
    got = metrics.prdc(PEERS["prdc_real"], PEERS["prdc_fake"], k=k, chunk_size=chunk_size)
    assert got == {name: float(PEERS[f"prdc_{name}_k{k}"]) for name in ("precision", "recall", "density", "coverage")}


def test_precision_is_fidelity_and_recall_is_diversity_on_dropped_modes():
    """Reals from four Gaussian blobs, fakes from one of them only (mode dropping): every fake looks
    real (precision ~1) but a quarter of the reals is reached (recall ~0.25). torch-fidelity once
    returned the two swapped (toshas/torch-fidelity issue #58)."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    real = centres[np.arange(400) % 4] + rng.normal(size=(400, 2))
    fake = centres[0] + rng.normal(size=(100, 2))
    got = metrics.prdc(real, fake, k=3)
    assert got["precision"] > 0.9 and got["recall"] < 0.35
    assert got["coverage"] < 0.35  # three modes have no fake nearby


def test_prdc_checks_its_inputs():
    with pytest.raises(ValueError, match="`real_features` must be a \\[N, D\\]"):
        metrics.prdc(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="more than k = 3"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(TypeError, match="`k`"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((5, 2)), k=2.5)
    with pytest.raises(ValueError, match="`chunk_size`"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((5, 2)), chunk_size=0)


def test_live_prdc_package():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(1)
    real = rng.normal(size=(150, 5))
    fake = rng.normal(size=(110, 5)) * 0.8 + 0.3
    ref = prdc.compute_prdc(real, fake, nearest_k=4)
    got = metrics.prdc(real, fake, k=4, chunk_size=64)
    for name in ("precision", "recall", "density", "coverage"):
        assert got[name] == pytest.approx(float(ref[name]), abs=1e-12), name
