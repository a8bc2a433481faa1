"""The autoencoders experiment: a smoke run smaller than --quick, resume, and its helpers."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import autoencoders as exp_ae
from experiments._framework import run_experiment

TINY = dict(
    models=("ae", "dae_masking", "sparse", "ksparse", "contractive"),
    hidden=16,
    ksparse_ks=(3,),
    ksparse_k_start=8,
    ksparse_anneal_steps=10,
    steps=20,
    batch_size=32,
    checkpoint_every=10,
    log_every=10,
)


@pytest.mark.slow
def test_smoke_run_writes_the_report_and_resumes(tmp_path):
    experiment = exp_ae.EXPERIMENT
    config = experiment.make_config(**TINY)
    summary = run_experiment(experiment, config, tmp_path, quick=False)
    names = ["ae", "dae_masking", "sparse", "ksparse_3", "contractive"]
    assert summary["models"] == names
    for name in names:
        assert 0.0 < summary[f"{name}/squared_error"] < 200.0  # 784 pixels in [0, 1]
        assert 0.1 < summary[f"{name}/linear_accuracy"] <= 1.0
        assert summary[f"{name}/jacobian_frobenius"] > 0.0
        assert (tmp_path / name / "checkpoints").is_dir()
    # the k-sparse unit activity is exactly k / hidden on average (k units per digit)
    assert summary["ksparse_3/mean_activation"] == pytest.approx(3 / 16)
    # the closed-form Jacobian norms agree with autodiff
    assert summary["jacobian_closed_form_max_rel_error"] < 1e-4
    for figure in ("reconstructions", "denoising", "filters", "filters_ksparse", "activations", "training_curves"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "| ksparse_3 |" in report and "| raw pixels |" in report

    # a second run on the same workdir resumes every model at its last step: same parameters
    again = run_experiment(experiment, config, tmp_path, quick=False)
    assert again["params_digest"] == summary["params_digest"]
    assert again["resumed_from"] == {name: 20 for name in names}
    assert again["ae/linear_accuracy"] == summary["ae/linear_accuracy"]


def test_ridge_classifier_matches_least_squares():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 2
    y_train, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
    x_train = centers[y_train] + rng.normal(size=(300, 5))
    x_test = centers[y_test] + rng.normal(size=(100, 5))
    accuracy, lam = exp_ae.ridge_classifier(x_train, y_train, x_test, y_test, (1e-6,), num_classes=3, val_size=50)
    # numpy.linalg.lstsq on the standardized features with a bias column: at lambda -> 0 the
    # ridge classifier is the least-squares one
    mean, std = x_train.mean(0), x_train.std(0)
    design = np.c_[(x_train - mean) / std, np.ones(300)]
    weights = np.linalg.lstsq(design, np.eye(3)[y_train], rcond=None)[0]
    want = np.mean(np.argmax(np.c_[(x_test - mean) / std, np.ones(100)] @ weights, 1) == y_test)
    assert lam == 1e-6 and accuracy == want and accuracy > 0.8


def test_model_selection_is_validated():
    with pytest.raises(ValueError, match="unknown model"):
        exp_ae.model_specs(exp_ae.EXPERIMENT.make_config(models=("ae", "vae")))
    with pytest.raises(ValueError, match="ksparse_ks"):
        exp_ae.model_specs(exp_ae.EXPERIMENT.make_config(hidden=16, ksparse_ks=(20,)))
    specs = exp_ae.model_specs(exp_ae.EXPERIMENT.make_config())
    assert [s.name for s in specs] == ["ae", "dae_masking", "dae_gaussian", "dae_salt_and_pepper", "sparse",
                                       "ksparse_10", "ksparse_25", "ksparse_40", "ksparse_70", "contractive"]
