"""Smoke tests of the diffusion experiments (configs far smaller than --quick), exact resume, and
the denoisers of genjax.nn._diffusion."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from experiments import ddpm_mnist, diffusion_2d, latent_diffusion
from experiments._framework import ConfigError, run_experiment
from genjax import nn as genjax_nn
from genjax.nn import _diffusion as dnn

# ------------------------------------------------------------------------------ the networks


@pytest.mark.parametrize(
    "strides,padding,x_shape,k",
    [(1, "SAME", (2, 9, 9, 3), (3, 3)), (2, "SAME", (2, 28, 28, 3), (3, 3)),
     ((1, 2), ((2, 1), (0, 3)), (2, 8, 11, 3), (3, 4)), (3, "VALID", (2, 11, 11, 3), (3, 3))],
)
def test_conv_used_by_the_unet_matches_xla_gradients(strides, padding, x_shape, k):
    """Reference: jax.grad of lax.conv_general_dilated (XLA's own transpose rules)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=(*k, x_shape[-1], 5)), jnp.float32)
    s = (strides, strides) if isinstance(strides, int) else strides
    ref = lambda x, w: jnp.sum(jnp.sin(lax.conv_general_dilated(x, w, s, padding,
                                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    mine = lambda x, w: jnp.sum(jnp.sin(genjax_nn.conv2d(x, w, strides, padding)))
    np.testing.assert_allclose(mine(x, w), ref(x, w), rtol=1e-5)
    for a, b in zip(jax.grad(mine, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_denoisers_shapes_and_outputs():
    t = jnp.array([0, 999])
    emb = dnn.sinusoidal_embedding(t, 8)
    # t = 0: sin(0) = 0 and cos(0) = 1 for every frequency (the definition)
    np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=1e-7)
    mlp = dnn.MlpDenoiser(hidden=8, num_layers=2, time_dim=8, fourier_levels=3)
    p_mlp = mlp.init(jax.random.key(0), jnp.zeros((2, 2)), t)
    assert np.all(mlp.apply(p_mlp, jnp.ones((2, 2)), t) == 0)  # zero-initialised output layer
    for shape, channels in (((2, 28, 28, 1), (4, 8, 8)), ((2, 7, 7, 3), (8,))):
        # (a real init compiles one RNG stream per parameter: ~20 s on a loaded 2-core CPU; the
        # experiments' smoke tests below do it, here the shapes and a forward pass suffice)
        unet = dnn.UNet(channels=channels, time_dim=8, attention=True)
        shapes = jax.eval_shape(unet.init, jax.random.key(0), jnp.zeros(shape), t)
        assert shapes["params"]["conv_out"]["kernel"].shape == (3, 3, channels[0], shape[-1])
        out = jax.eval_shape(unet.apply, shapes, jnp.ones(shape), t)
        assert out.shape == shape and out.dtype == jnp.float32
    with pytest.raises(ValueError, match="one timestep per example"):
        mlp.apply(p_mlp, jnp.ones((2, 2)), t[:1])
    with pytest.raises(ValueError, match="divisible by 4"):
        dnn.UNet(channels=(4, 8, 8)).init(jax.random.key(0), jnp.zeros((1, 10, 10, 1)), t[:1])


# ------------------------------------------------------------------------------ diffusion_2d

TINY_2D = dict(datasets=("ring",), num_timesteps=20, steps=4, batch_size=16, hidden=16, num_layers=1, time_dim=8,
               num_samples=40, samplers=("ddim", "dpmpp_2m", "heun"), nfe=(2, 5), checkpoint_every=2, log_every=2)


def _run(module, workdir, **overrides):
    exp = module.EXPERIMENT
    return run_experiment(exp, exp.make_config(quick=True, **overrides), workdir, quick=True)


@pytest.mark.slow
def test_diffusion_2d_smoke(tmp_path):
    summary = _run(diffusion_2d, tmp_path, **TINY_2D)
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (1, 40, 2) and np.all(np.isfinite(samples))
    # every sampler at every budget; Heun's budget of 2 calls is 1 step (1 call: 2N - 1), of 5 calls 3 steps
    for tag in ("ddpm", "ddim_2", "ddim_5", "dpm++_2", "dpm++_5", "heun_1", "heun_5"):
        for metric in ("high_quality", "modes_captured", "reverse_kl", "sliced_w1", "seconds_per_1000"):
            assert f"ring/{tag}/{metric}" in summary, (tag, metric)
    assert "params_digest" in summary
    assert 0.0 <= summary["ring/ddpm/high_quality"] <= 1.0
    for fig in ("forward_process", "reverse_process", "trajectories", "samples", "training_loss", "quality_vs_nfe"):
        assert (tmp_path / f"{fig}.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "Mode coverage" in report and "exact samples (reference)" in report and "Quality against denoiser" in report


def test_diffusion_training_resumes_exactly(tmp_path):
    """A run killed after its step-2 checkpoint (the later one removed) resumes from it and ends
    with the parameters and EMA weights of the run that never stopped (the data are a function
    of (seed, step), the noise of fold_in(key, step))."""
    import shutil

    from genjax import train

    cfg = diffusion_2d.EXPERIMENT.make_config(quick=True, **TINY_2D)
    built = diffusion_2d.build(cfg)
    init, step = built.init, built.step
    source = diffusion_2d.ToyBatches("ring", cfg.batch_size, 0, 0.7)
    kwargs = dict(num_steps=4, workdir=tmp_path, checkpoint_every=2, log_every=2, progress=False)
    first = train.fit(init(jax.random.key(0)), step, source, **kwargs)
    shutil.rmtree(tmp_path / "checkpoints" / "4")
    again = train.fit(init(jax.random.key(0)), step, source, **kwargs)
    assert again.resumed_from == 2
    assert train.digest(again.state) == train.digest(first.state)
    assert train.params_digest(again.state.extras) == train.params_digest(first.state.extras)


# ------------------------------------------------------------------------------ MNIST experiments


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs directory with an untrained (random) MNIST classifier for the FID features and an
    untrained tiny VQ-VAE, so that the smoke tests train neither."""
    from experiments import vqvae
    from genjax import nn, train

    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    # random parameters from NumPy: a JAX init would compile one RNG stream per parameter
    random_like = lambda shapes: jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    clf = random_like(jax.eval_shape(nn.MnistClassifier(features_dim=16).init, jax.random.key(0),
                                     jnp.zeros((1, 28, 28, 1)))["params"])
    train.save_params(root / "mnist_classifier" / "classifier.msgpack", clf)
    model = vqvae.Autoencoder(latent_dim=4, channels=(4, 8), res_blocks=1, res_hidden=4, out_channels=1)
    params = random_like(jax.eval_shape(lambda k: model.init(k, (28, 28, 1)), jax.random.key(1)))
    book = rng.uniform(-0.8, 0.8, (8, 4)).astype(np.float32)
    info = {"image_shape": [28, 28, 1], "latent_shape": [7, 7, 4], "num_codes": 8, "latent_mean": 0.0,
            "latent_std": 1.0}
    vqvae.save_autoencoder(root / "vqvae", model, params, book, info)
    return root


TINY_MNIST = dict(channels=(4,), num_res_blocks=0, attention=False, num_timesteps=20, samplers=("ddim", "dpmpp_2m"),
                  nfe=(5, 3),
                  ddpm_sampler=True, steps=4, batch_size=8, num_samples=8, sample_batch=8, checkpoint_every=2,
                  log_every=2, eval_every=2)


@pytest.mark.slow
def test_ddpm_mnist_smoke(runs_root):
    summary = _run(ddpm_mnist, runs_root / "ddpm_mnist", **TINY_MNIST)
    d = runs_root / "ddpm_mnist"
    samples = np.load(d / "samples.npy")
    assert samples.shape == (8, 28, 28, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    for key in ("fid/ddpm_20", "fid/ddim_5", "kid/ddim_5", "fid/dpm++_3", "fid/ddim_3", "fid/dpm++_5",
                "seconds_per_1000/ddpm_20", "real_fid"):
        assert np.isfinite(summary[key])
    # the quick config's U-Net sees 2x2 patches; the closing comparison's record is the best sampler's
    (record,) = summary["generators"]
    best = min(("ddpm_20", "ddim_5", "ddim_3", "dpm++_5", "dpm++_3"), key=lambda tag: summary[f"fid/{tag}"])
    assert summary["best_sampler"].lower().replace(" ", "_") == best and record["fid"] == summary[f"fid/{best}"]
    assert record["samples"] == "samples.npy" and record["train_seconds"] > 0
    assert record["precision"] == summary[f"precision/{best}"] and 0 <= summary["coverage/ddim_5"] <= 1
    assert len(summary["params_digest"]) == 64
    for fig in ("forward_process", "training_loss", "samples", "quality_vs_speed", "reverse_process", "fid_vs_seconds"):
        assert (d / f"{fig}.png").exists()
    assert "MNIST-feature FID" in (d / "report.md").read_text()
    assert json.loads((d / "summary.json").read_text())["steps"] == 4
    # FID during training (eval_every 2): step 2, then the final score of the curve's sampler
    curve = summary["fid_curve"]
    points = curve["points"]
    assert [p["step"] for p in points] == [2, 4] and points[0]["seconds"] < points[1]["seconds"]
    assert points[-1]["fid"] == summary[f"fid/{curve['sampler'].lower().replace(' ', '_')}"]
    assert all(np.isfinite(p["fid"]) for p in points)


@pytest.mark.slow
def test_latent_diffusion_smoke(runs_root):
    summary = _run(latent_diffusion, runs_root / "latent_diffusion", **TINY_MNIST)
    d = runs_root / "latent_diffusion"
    samples = np.load(d / "samples.npy")
    assert samples.shape == (8, 28, 28, 1) and samples.min() >= 0.0 and samples.max() <= 1.0
    for key in ("fid/ddpm_20", "fid/ddim_5", "fid/dpm++_3", "seconds_per_1000/ddpm_20", "reconstruction_fid"):
        assert np.isfinite(summary[key])
    (record,) = summary["generators"]
    assert record["label"].startswith("latent diffusion (") and np.isfinite(record["fid"])
    report = (d / "report.md").read_text()
    assert "VQ-VAE reconstructions" in report
    assert [p["step"] for p in summary["fid_curve"]["points"]] == [2, 4]
    if (runs_root / "ddpm_mnist" / "summary.json").exists():  # the pixel-space rows, when that run exists
        assert "pixel space: DDPM 20" in report and summary["pixel_fid/ddpm"] is not None
        rows = summary["equal_wall_clock"]  # each model's evaluations against the other's at the same seconds
        assert len(rows) == 4 and [r["seconds"] for r in rows] == sorted(r["seconds"] for r in rows)
        assert (d / "fid_vs_seconds.png").exists() and "at equal wall clock" in report


@pytest.mark.slow
def test_diffusion_objectives_smoke(runs_root):
    """Two objectives from the same initial weights, FID at every evaluation point, the baseline's
    final FID as the target the table measures against, resumable from the run's records."""
    from experiments import diffusion_objectives as obj

    d = runs_root / "diffusion_objectives"
    tiny = dict(objectives=("epsilon/simple", "v/min_snr"), channels=(4,), patch_size=1, num_res_blocks=0,
                num_timesteps=20, steps=4, eval_every=2, batch_size=8, num_samples=8, sample_batch=8, nfe=3,
                checkpoint_every=2, log_every=2)
    summary = _run(obj, d, **tiny)
    for o in ("epsilon/simple", "v/min_snr"):
        assert sorted(summary[f"{o}/fid"]) == ["2", "4"] and all(np.isfinite(list(summary[f"{o}/fid"].values())))
        assert summary[f"{o}/train_seconds"] > 0
    assert summary["epsilon/simple/steps_to_baseline_final"] in (2, 4)  # the baseline reaches itself
    assert obj.steps_to_reach([(2, 9.0), (4, 5.0)], 5.0) == 4 and obj.steps_to_reach([(2, 9.0)], 5.0) is None
    for fig in ("fid_vs_steps", "samples"):
        assert (d / f"{fig}.png").exists()
    again = _run(obj, d, **tiny)  # finished: resumes every objective at its end, same FIDs
    assert again["v/min_snr/fid"] == summary["v/min_snr/fid"]
    with pytest.raises(ConfigError, match=r"--objectives: expected <prediction>/<weighting>"):
        obj.EXPERIMENT.make_config(objectives=("eps/simple",))
    with pytest.raises(ConfigError, match=r"--steps \(5\) must be a multiple of --eval-every \(2\)"):
        obj.EXPERIMENT.make_config(steps=5, eval_every=2)


def test_the_tour_leaves_out_what_it_does_not_run_unless_named():
    from experiments import NOT_IN_TOUR, REGISTRY
    from experiments._tour import selected

    assert "diffusion_objectives" in NOT_IN_TOUR <= set(REGISTRY)
    assert selected(None) == [n for n in REGISTRY if n not in NOT_IN_TOUR]
    assert selected("diffusion_objectives") == ["diffusion_objectives"]


def test_gan_rows_read_the_gan_chapter_beside_the_run(tmp_path):
    import types

    from genjax import report

    report.write_json(tmp_path / "gan_mode_collapse" / "summary.json",
                      {"grid/wgan_gp": {"modes_mean": 24.6, "high_quality_mean": 0.91, "reverse_kl_mean": 0.05},
                       "ring/gan": {"modes_mean": 8.0, "high_quality_mean": 0.97, "reverse_kl_mean": 0.01},
                       "params_digest": "x"})
    ctx = types.SimpleNamespace(workdir=tmp_path / "diffusion_2d")
    rows = diffusion_2d.gan_rows(ctx, "grid")
    assert rows[0] == ("GAN run (gan_mode_collapse): wgan_gp, mean over seeds", 0.91, 24.6, 0.05)
    assert any(r[0].startswith("published: ") for r in rows)  # the numbers gan_mode_collapse quotes
    assert [r[0] for r in diffusion_2d.gan_rows(ctx, "ring")] == ["GAN run (gan_mode_collapse): gan, mean over seeds"]


def test_a_prerequisite_run_beside_is_used_or_trained_there_first(tmp_path, monkeypatch):
    """latent_diffusion finds the VQ-VAE (and FID its classifier) in `<workdir>/../<name>`; when
    the files are missing that experiment is run there first (seed 0, at this run's preset or, lacking it, quick)."""
    import types

    from experiments import _framework, vqvae

    calls = []

    def fake_run(exp, config, directory, preset):
        calls.append((exp.name, config, directory, preset))
        directory.mkdir(parents=True)
        (directory / "autoencoder.json").write_text("{}")

    monkeypatch.setattr(_framework, "run_experiment", fake_run)
    logged = []
    ctx = types.SimpleNamespace(workdir=tmp_path / "latent_diffusion", quick=True, preset="quick", log=logged.append)
    directory = _framework.prerequisite_run(ctx, "vqvae", ["autoencoder.json"], data_source="embedded")
    assert directory == tmp_path.resolve() / "vqvae"
    [(name, config, where, preset)] = calls
    assert (name, where, preset) == ("vqvae", directory, "quick")
    assert config.seed == 0 and config.data_source == "embedded" and config.steps == vqvae.QUICK["steps"]
    assert "training it there first (quick preset)" in logged[0]
    assert _framework.prerequisite_run(ctx, "vqvae", ["autoencoder.json"]) == directory
    assert len(calls) == 1  # found: not trained again
    # a standard run's prerequisite is trained at its standard preset (the classifier, which has
    # none, at its quick one: Experiment.nearest_preset)
    standard = types.SimpleNamespace(workdir=tmp_path / "std" / "latent_diffusion", quick=False, preset="standard",
                                     log=logged.append)
    _framework.prerequisite_run(standard, "vqvae", ["autoencoder.json"])
    _framework.prerequisite_run(standard, "mnist_classifier", ["autoencoder.json"])
    (_, std_vq, _, p1), (_, std_clf, _, p2) = calls[1:]
    assert (p1, std_vq.steps, p2) == ("standard", vqvae.STANDARD["steps"], "quick")
    assert std_clf.steps == _framework_quick_steps("mnist_classifier")


def _framework_quick_steps(name):
    from experiments import load

    return load(name).make_config(quick=True).steps


def test_patches_are_pixel_unshuffle_and_invert_exactly():
    """`to_patches(x, 2)[b, i, j]` holds pixels (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1)
    with their channels, in that order; `from_patches` inverts it bit for bit; p = 1 is the identity."""
    from experiments._diffusion_common import from_patches, to_patches

    x = np.random.default_rng(0).normal(size=(2, 6, 4, 3)).astype(np.float32)
    y = np.asarray(to_patches(x, 2))
    assert y.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(y[1, 2, 1], np.concatenate([x[1, 4, 2], x[1, 4, 3], x[1, 5, 2], x[1, 5, 3]]))
    np.testing.assert_array_equal(np.asarray(from_patches(y, 2)), x)
    assert to_patches(x, 1) is x and from_patches(x, 1) is x


def test_fid_curve_interpolation_and_equal_wall_clock():
    """`fid_at_seconds` is exact at a curve's points, log-log linear between them (the geometric
    mean of the FIDs at the geometric mean of the seconds) and None outside; `equal_wall_clock`
    pairs every point of each curve with the other's value."""
    from experiments._diffusion_common import fid_at_seconds

    pixel = [{"step": 300, "seconds": 10.0, "fid": 100.0}, {"step": 600, "seconds": 40.0, "fid": 25.0}]
    latent = [{"step": 500, "seconds": 5.0, "fid": 80.0}, {"step": 1000, "seconds": 20.0, "fid": 30.0}]
    assert fid_at_seconds(pixel, 10.0) == 100.0 and fid_at_seconds(pixel, 40.0) == 25.0
    assert fid_at_seconds(pixel, 20.0) == pytest.approx(50.0)  # sqrt(10 * 40) -> sqrt(100 * 25)
    assert fid_at_seconds(pixel, 9.0) is None and fid_at_seconds(pixel, 41.0) is None
    rows = latent_diffusion.equal_wall_clock(latent, pixel)
    assert [r["seconds"] for r in rows] == [5.0, 10.0, 20.0, 40.0]
    assert rows[0]["pixel_fid"] is None and rows[1]["latent_fid"] == pytest.approx(80.0 * (30 / 80) ** 0.5)
    assert rows[2] == {"seconds": 20.0, "latent_fid": 30.0, "latent_step": 1000, "pixel_fid": pytest.approx(50.0),
                       "pixel_step": None}
    assert rows[3]["latent_fid"] is None and rows[3]["pixel_step"] == 600




def test_the_learned_variance_unet_trains_the_hybrid_loss_and_samples_with_its_variances():
    """ddpm_mnist's `learned_variance=True` (Nichol & Dhariwal 2021): the U-Net's output has twice
    the channels, the second half mapped to v = (out + 1) / 2 (as openai/improved-diffusion maps
    its `model_var_values`); the step's loss is `hybrid_loss` of that model with the step's key;
    `apply_fn` is the first half; "iDDPM n" is `learned_variance_sample` on n strided timesteps;
    and the config's checks name their flags."""
    from experiments._diffusion_common import from_patches, sampler_fns, to_patches
    from genjax import diffusion

    cfg = ddpm_mnist.EXPERIMENT.make_config(**{**TINY_MNIST, "patch_size": 2}, learned_variance=True,
                                            vlb_weight=0.5, prediction="x0")
    built = ddpm_mnist.build(cfg)
    state = built.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.05 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), state.params)
    state = state.replace(params=params)  # (the U-Net's output layer starts at zero: move it)

    def model(x, t):  # the mapping the docstring states, written out
        out = from_patches(built.model.apply({"params": params}, to_patches(x, 2), t), 2)  # [B, 28, 28, 2]
        return out[..., :1], (out[..., 1:] + 1.0) / 2.0

    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)), jnp.uint8)
    x, t = images.astype(jnp.float32) / 127.5 - 1.0, jnp.array([0, 5, 10, 19])
    assert built.model.apply({"params": params}, to_patches(x, 2), t).shape == (4, 14, 14, 8)
    np.testing.assert_array_equal(built.apply_fn(params, x, t), model(x, t)[0])
    expected = jnp.mean(diffusion.hybrid_loss(state.step_key(), model, built.schedule, x, 0.5, "x0"))
    _, metrics = jax.jit(built.step)(state, {"image": images})
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
    simple = diffusion.ddpm_loss(state.step_key(), lambda x, t: model(x, t)[0], built.schedule, x, "x0")
    assert float(expected) > float(jnp.mean(simple))  # (+ 0.5 T L_t, a KL: positive)

    fns = sampler_fns(built.apply_fn, built.schedule, (2, 28, 28, 1), samplers=("ddim",), nfe=(5,), ddpm=True,
                      clip_x0=(-1.0, 1.0), prediction="x0", learned_sample=built.sample)
    assert [(k, n) for k, (_, n) in fns.items()] == [("DDPM 20", 20), ("DDIM 5", 5), ("iDDPM 20", 20), ("iDDPM 5", 5)]
    got = fns["iDDPM 5"][0](params, jax.random.key(4))
    np.testing.assert_array_equal(got, diffusion.learned_variance_sample(
        jax.random.key(4), model, built.schedule, (2, 28, 28, 1), 5, prediction="x0", clip_x0=(-1.0, 1.0)))
    assert bool(jnp.all(jnp.isfinite(got)))

    with pytest.raises(ValueError, match="--vlb-weight"):
        ddpm_mnist.EXPERIMENT.make_config(vlb_weight=-1.0)
    with pytest.raises(ValueError, match="--learned-variance"):
        ddpm_mnist.EXPERIMENT.make_config(learned_variance=True, loss_weighting="min_snr")
