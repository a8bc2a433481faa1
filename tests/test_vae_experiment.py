"""Smoke test of experiments.vae: a config far smaller than --quick, its outputs, and exact resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from experiments import vae as vae_experiment
from experiments._framework import ConfigError, run_experiment
from genjax import report

TINY = dict(
    steps=20, checkpoint_every=10, log_every=10, eval_every=10, models=("mlp2",), hidden_dims=(32,),
    num_seeds=2, batch_size=16, lr_schedule="constant", iwae_samples=20, iwae_chunk=10, eval_examples=40,
    eval_batch_size=20, grad_var_draws=4, grad_var_examples=8, data_source="embedded", fid_samples=64,
)


def beside_a_random_classifier(root, name):
    """`root/name`, with an untrained MnistClassifier in `root/mnist_classifier`, where the run looks
    for the FID features' classifier (so that the smoke run trains none). Parameters from NumPy:
    a JAX init would compile."""
    import jax
    import jax.numpy as jnp

    from genjax import nn, train

    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(nn.MnistClassifier(features_dim=16).init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    params = jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes["params"])
    train.save_params(root / "mnist_classifier" / "classifier.msgpack", params)
    return root / name


def test_tiny_run_writes_the_report_and_resumes_exactly(tmp_path):
    tmp_path = beside_a_random_classifier(tmp_path, "vae")
    exp = vae_experiment.EXPERIMENT
    config = exp.make_config(**TINY)
    summary = run_experiment(exp, config, tmp_path)

    for f in ("config.json", "summary.json", "report.md", "samples.npy", "iwae_bound_vs_k.png", "samples.png",
              "reconstructions.png", "interpolations.png", "latent_manifold.png",
              "training_and_gradient_variance.png", "mlp2/eval.json", "mlp2/metrics.jsonl"):
        assert (tmp_path / f).is_file(), f
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (64, 28, 28, 1) and samples.min() >= 0 and samples.max() <= 1
    md = (tmp_path / "report.md").read_text()
    assert "86.76" in md and "What differs" in md and "Median variance ratio" in md

    # The importance-weighted bound is at least the ELBO: NLL <= -ELBO (both per image, in nats).
    assert summary["mlp2/heldout_nll"] <= -summary["mlp2/heldout_elbo"] + 1e-6
    assert summary["mlp2/train_nll"] <= -summary["mlp2/train_elbo"] + 1e-6
    assert len(summary["mlp2/heldout_nll_per_seed"]) == 2
    bounds = summary["mlp2/heldout_bounds"]
    assert list(bounds) == ["1", "10", "20"] and bounds["1"] <= bounds["20"]
    assert summary["mlp2/active_units"] <= 2 and summary["params_digest"]
    # its samples' MNIST-feature FID/KID, in the record the tour plots
    generator, expost = summary["generators"]  # z ~ N(0, I), and z from the ex-post mixture
    assert generator["label"] == "VAE mlp2" and generator["num_samples"] == 64
    assert expost["label"] == "VAE mlp2 + ex-post GMM" and np.isfinite(summary["mlp2/expost_gmm_fid"])
    assert all(np.isfinite(generator[k]) for k in ("fid", "kid", "train_seconds", "seconds_per_1000", "real_fid"))
    assert all(0 <= generator[k] <= 1 for k in ("precision", "recall", "coverage"))  # beside FID (issue 20)
    assert generator["fid"] >= 0 and generator["train_seconds"] > 0 and "MNIST-feature FID" in md
    assert "ex-post GMM" in md
    # The gradient-variance monitor ran at every evaluation: the score function is the noisier.
    history = report.read_jsonl(tmp_path / "mlp2" / "metrics.jsonl")
    evals = [r for r in history if "eval/grad_var_score" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert all(np.mean(r["eval/grad_var_score"]) > np.mean(r["eval/grad_var_reparam"]) for r in evals)

    # Lose the last checkpoint and the evaluation (as a run killed after step 10 would): the
    # rerun resumes from step 10 and ends with the same parameters and numbers.
    shutil.rmtree(tmp_path / "mlp2" / "checkpoints" / "20")
    (tmp_path / "mlp2" / "eval.json").unlink()
    (tmp_path / "summary.json").unlink()
    resumed = run_experiment(exp, config, tmp_path)
    assert resumed["params_digest"] == summary["params_digest"]
    assert resumed["mlp2/heldout_nll"] == pytest.approx(summary["mlp2/heldout_nll"], rel=1e-6)
    assert resumed["generators"][0]["train_seconds"] > 0  # from the log: this call trained 10 steps of 20
    steps = [r["step"] for r in report.read_jsonl(tmp_path / "mlp2" / "metrics.jsonl")]
    assert steps == [10, 20]


def test_ex_post_mixture_recovers_a_known_mixture_and_samples_it():
    """`fit_gmm` (EM, full covariances) on 4,000 draws of a two-component mixture with known
    weights 3:1, means and covariances recovers them to within sampling error, its log-likelihood
    never decreases (EM's monotonicity), and `sample_gmm` reproduces the data's mean and covariance."""
    import jax

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal([-3.0, 0.0], 0.5, (3000, 2)),
                        rng.normal([2.0, 1.0], [1.0, 0.3], (1000, 2))]).astype(np.float32)
    weights, means, chol, lls = vae_experiment.fit_gmm(jax.random.key(0), z, 2, iterations=60)
    order = np.argsort(np.asarray(means)[:, 0])
    np.testing.assert_allclose(np.asarray(weights)[order], [0.75, 0.25], atol=0.01)
    np.testing.assert_allclose(np.asarray(means)[order], [[-3.0, 0.0], [2.0, 1.0]], atol=0.06)
    cov = np.einsum("kde,kfe->kdf", np.asarray(chol), np.asarray(chol))[order]
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), [[0.25, 0.25], [1.0, 0.09]], rtol=0.1)
    assert np.all(np.diff(np.asarray(lls)) >= -1e-4)
    x = np.asarray(vae_experiment.sample_gmm(jax.random.key(1), (weights, means, chol), 20_000))
    np.testing.assert_allclose(x.mean(0), z.mean(0), atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), np.cov(z.T), rtol=0.05, atol=0.02)


def test_seeds_trained_together_are_each_seed_trained_alone():
    """vae trains its seeds through `fit(replicas=True)`, one loader per seed: replica i (its
    data order, its binarizations, its z draws) is seed i's run alone, bit for bit when looped (as
    on CPU). (The old path drew every seed's noise from seed 0's key: a seed's run depended on the
    other seeds it was trained with.)"""
    import jax
    import optax

    from genjax import data, train

    cfg = vae_experiment.EXPERIMENT.make_config(**TINY)
    spec = vae_experiment.parse_models(cfg.models)[0]
    shape = (28, 28, 1)
    model = vae_experiment.build_model(cfg, spec, shape)
    init = vae_experiment.make_init(model, optax.adam(1e-3), shape, np.zeros(784, np.float32))
    step = vae_experiment.make_step(model, cfg)
    images = np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8)  # values do not matter
    seeds = [0, 7]
    loaders = [data.ArrayLoader({"image": images}, 16, s) for s in seeds]
    kw = dict(num_steps=6, log_every=3, progress=False)
    together = train.fit(train.init_replicas(init, train.seed_keys(seeds)), step, loaders, replicas=True,
                         replica_mode="loop", **kw)
    assert np.shape(together.history[-1]["elbo"]) == (2,)
    for i, s in enumerate(seeds):
        alone = train.fit(init(jax.random.key(s)), step, loaders[i], **kw)
        for x, y in zip(jax.tree.leaves(together.state.params), jax.tree.leaves(alone.state.params), strict=True):
            assert np.array_equal(np.asarray(x)[i], np.asarray(y))
        assert together.history[-1]["elbo"][i] == alone.history[-1]["elbo"]


def test_bad_configs_are_refused_on_the_command_line():
    exp = vae_experiment.EXPERIMENT
    with pytest.raises(ConfigError, match="expected names like mlp50"):
        exp.parse_args(["--models", "resnet50"])
    with pytest.raises(ConfigError, match="multiple of --iwae-chunk"):
        exp.make_config(**{**TINY, "iwae_samples": 25})
    with pytest.raises(ConfigError, match="--num-seeds"):
        exp.make_config(num_seeds=0)
    assert vae_experiment.bound_ks(5000) == [1, 10, 100, 1000, 5000]
