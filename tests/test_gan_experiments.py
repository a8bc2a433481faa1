"""Smoke tests of the GAN experiments with configs far smaller than --quick, their shared train
step, the pure toy source, and exact resume."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _gan_common as common
from experiments._framework import run_experiment
from genjax import report


def _run(module, workdir, **overrides):
    exp = module.EXPERIMENT
    return run_experiment(exp, exp.make_config(**overrides), workdir)


# ------------------------------------------------------------------------------ shared pieces


def test_toy_source_is_a_pure_function_of_seed_and_step():
    s = common.ToySource("grid", batch_size=16, seed=3, draws=2)
    a = s.batches(5, 3)["x"]
    assert a.shape == (3, 2, 16, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a[1:], s.batches(6, 2)["x"])  # resumed at step 6: the same data
    assert not np.array_equal(a, common.ToySource("grid", 16, seed=4, draws=2).batches(5, 3)["x"])
    with pytest.raises(ValueError, match="mixture"):
        common.ToySource("moons", 4, 0)


def test_variants_parse_and_bad_ones_list_the_valid_names():
    assert common.parse_variant("gan+fm+ls") == ("gan", frozenset({"fm", "ls"}))
    with pytest.raises(ValueError, match="must start with a loss"):
        common.parse_variant("fm+gan")
    with pytest.raises(ValueError, match=r"unknown switch.*'xx'.*known: ls"):
        common.parse_variant("gan+xx")


@pytest.mark.parametrize("options", [
    common.GanOptions("gan", label_smoothing=0.1, historical_averaging=1e-3, instance_noise=0.1, noise_anneal_steps=4),
    common.GanOptions("gan", feature_matching=True, pack=2),
    common.GanOptions("wgan", n_critic=2),
    common.GanOptions("wgan_gp", n_critic=2),
    common.GanOptions("gan", r1_weight=1.0),
])
def test_gan_step_runs_and_updates_both_players(options):
    import optax

    from genjax import nn, train

    g, d = nn.MlpGenerator(hidden=8, depth=1), nn.MlpDiscriminator(hidden=8, depth=1)
    params = {"generator": g.init(jax.random.key(0), jnp.zeros((1, 2)))["params"],
              "discriminator": d.init(jax.random.key(1), jnp.zeros((1, 2 * options.pack)))["params"]}
    state = train.TrainState.create(params=params, tx={"generator": optax.adam(1e-2), "discriminator": optax.adam(1e-2)},
                                    key=jax.random.key(2), extras=common.gan_extras(options, params))
    step = jax.jit(common.make_gan_step(lambda p, z, e: g.apply({"params": p}, z),
                                        lambda p, x, with_features=False: d.apply({"params": p}, x, with_features=with_features),
                                        2, options))
    batch = {"x": jnp.asarray(common.ToySource("ring", 8, 0, draws=options.n_critic).batches(0, 1)["x"][0])}
    new, metrics = step(state, batch)
    assert int(new.step) == 1
    for part in ("generator", "discriminator"):
        changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params[part], new.params[part])
        assert any(jax.tree.leaves(changed)), part
    assert all(np.isfinite(float(v)) for v in metrics.values())
    if options.loss == "wgan":
        assert all(float(jnp.max(jnp.abs(w))) <= options.clip + 1e-7 for w in jax.tree.leaves(new.params["discriminator"]))
    if options.historical_averaging:
        assert int(new.extras["ha_generator"].count) == 2
    assert ("r1" in metrics) == bool(options.r1_weight)
    if options.r1_weight:
        assert float(metrics["r1"]) > 0.0
    step(new, batch)
    assert step._cache_size() == 1  # the second step does not recompile


def test_wasserstein_variants_take_their_own_number_of_generator_steps():
    from experiments import gan_mnist

    cfg = gan_mnist.EXPERIMENT.make_config(quick=True)
    assert [gan_mnist.variant_steps(cfg, v) for v in ("gan+ema", "gan", "wgan_gp", "wgan")] == [3000, 3000, 1200, 1200]
    cfg = gan_mnist.EXPERIMENT.make_config(steps=40, wasserstein_steps=0)
    assert gan_mnist.variant_steps(cfg, "wgan_gp") == 40  # 0: the same `steps` as every variant
    # the closing comparison's names
    assert [gan_mnist.generator_label(v) for v in ("gan+ema", "gan_minimax", "wgan_gp", "wgan+ls")] == [
        "DCGAN gan+ema", "DCGAN gan_minimax", "WGAN-GP", "WGAN+ls"]


def test_final_lr_fraction_decays_each_network_over_its_own_updates():
    """Cosine decay (optax.cosine_decay_schedule: lr * (f + (1 - f) (1 + cos(pi t / T)) / 2)) to
    `final_lr_fraction` over T = the network's updates: the generator's steps, and for the WGAN
    critic n_critic per generator step; 1 keeps the papers' constant rate."""
    from experiments import gan_mnist

    cfg = gan_mnist.EXPERIMENT.make_config(quick=True, final_lr_fraction=0.1)
    assert gan_mnist.variant_steps(cfg, "wgan_gp") == 1200 and cfg.n_critic == 2
    g = gan_mnist.learning_rate(cfg, "gan+ema", "generator")
    d = gan_mnist.learning_rate(cfg, "gan+ema", "discriminator")
    np.testing.assert_allclose([g(0), g(1500), g(3000), d(3000)], [2e-4, 1.1e-4, 2e-5, 2e-5], rtol=1e-5)
    critic = gan_mnist.learning_rate(cfg, "wgan_gp", "discriminator")
    generator = gan_mnist.learning_rate(cfg, "wgan_gp", "generator")
    np.testing.assert_allclose([critic(1200), critic(2400), generator(1200)], [1.1e-4, 2e-5, 2e-5], rtol=1e-5)
    constant = gan_mnist.EXPERIMENT.make_config(quick=True)
    assert gan_mnist.learning_rate(constant, "wgan_gp", "discriminator") == 2e-4  # the quick WGAN-GP rate
    with pytest.raises(Exception, match="final-lr-fraction"):
        gan_mnist.EXPERIMENT.make_config(final_lr_fraction=0.0)


def test_mode_collapse_critic_schedule_spans_its_n_critic_updates_per_generator_step():
    """gan_mode_collapse decays each network's rate over its own updates (optax cosine formula as
    above, final fraction 0.02 by default): the WGAN critic (5 updates per generator step) reaches
    the final rate after all of training, not after a fifth of it; the GAN's two networks agree."""
    from experiments import gan_mode_collapse as mc

    cfg = mc.EXPERIMENT.make_config(quick=True)
    steps = mc.num_steps(cfg, "ring")
    assert steps == 5000 and cfg.n_critic == 5 and cfg.final_lr_fraction == 0.02
    critic = mc.learning_rate(cfg, "wgan_gp", "ring", "discriminator")
    generator = mc.learning_rate(cfg, "wgan_gp", "ring", "generator")
    lr, f = cfg.wgan_learning_rate, cfg.final_lr_fraction
    # the critic's update 5,000 (a fifth of training) is its schedule's first fifth: cos(pi / 5)
    np.testing.assert_allclose([critic(steps), critic(5 * steps), generator(steps)],
                               [lr * (f + (1 - f) * (1 + np.cos(np.pi / 5)) / 2), lr * f, lr * f], rtol=1e-5)
    g, d = (mc.learning_rate(cfg, "gan", "ring", n) for n in ("generator", "discriminator"))
    np.testing.assert_allclose([g(steps // 2), d(steps // 2)], [cfg.learning_rate * (f + (1 - f) / 2)] * 2, rtol=1e-5)


def test_gp_examples_penalises_the_first_pairs_of_the_batch_alone():
    """`GanOptions(gp_examples=k)`: the gradient penalty is estimated on the first k (real, fake)
    pairs only: changing the batch's other real examples leaves it unchanged (and changes the
    whole-batch penalty of k = 0, Gulrajani et al.'s estimate); k >= the batch is the whole batch."""
    import optax

    from genjax import nn, train

    g, d = nn.MlpGenerator(hidden=8, depth=1), nn.MlpDiscriminator(hidden=8, depth=1)
    params = {"generator": g.init(jax.random.key(0), jnp.zeros((1, 2)))["params"],
              "discriminator": d.init(jax.random.key(1), jnp.zeros((1, 2)))["params"]}
    state = train.TrainState.create(params=params, tx={"generator": optax.adam(1e-2), "discriminator": optax.adam(1e-2)},
                                    key=jax.random.key(2), extras={})
    real = jnp.asarray(common.ToySource("ring", 8, 0, draws=1).batches(0, 1)["x"][0])  # [1, 8, 2]
    moved = real.at[:, 3:].add(0.5)

    def penalty(k, x):
        step = common.make_gan_step(lambda p, z, e: g.apply({"params": p}, z),
                                    lambda p, x, with_features=False: d.apply({"params": p}, x), 2,
                                    common.GanOptions("wgan_gp", gp_examples=k))
        return float(jax.jit(step)(state, {"x": x})[1]["gradient_penalty"])

    assert penalty(3, real) == penalty(3, moved)
    assert penalty(0, real) != penalty(0, moved)
    assert penalty(8, real) == penalty(0, real) and penalty(64, real) == penalty(0, real)
    with pytest.raises(ValueError, match="gp_examples must be >= 0"):
        common.GanOptions("wgan_gp", gp_examples=-1)


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_mode_collapse_seeds_trained_together_are_each_seed_trained_alone(mode):
    """The experiment's one replica path, `fit(replicas=True)` with one ToySource per seed: replica
    i is seed i's run alone (bit for bit looped, as CPU runs it; to float rounding vmapped)."""
    from experiments import gan_mode_collapse as gmc
    from genjax import train

    cfg = gmc.Config(hidden=8, depth=1, batch_size=16, steps=6)
    built = gmc.build(cfg, "wgan_gp", "grid")  # 5 critic draws per step, gradient penalty: keys matter
    seeds = [3, 4]
    sources = [common.ToySource("grid", 16, s, draws=built.options.n_critic) for s in seeds]
    kw = dict(num_steps=6, log_every=3, batch_axis=1, progress=False)
    together = train.fit(train.init_replicas(built.init, train.seed_keys(seeds)), built.step, sources,
                         replicas=True, replica_mode=mode, **kw)
    assert together.state.step.tolist() == [6, 6] and np.shape(together.history[-1]["d_loss"]) == (2,)
    for i, s in enumerate(seeds):
        alone = train.fit(built.init(jax.random.key(s)), built.step, sources[i], **kw)
        for x, y in zip(jax.tree.leaves(together.state.params), jax.tree.leaves(alone.state.params), strict=True):
            if mode == "loop":
                assert np.array_equal(np.asarray(x)[i], np.asarray(y))
            else:
                np.testing.assert_allclose(np.asarray(x)[i], np.asarray(y), rtol=1e-4, atol=1e-6)
        assert together.history[-1]["d_loss"][i] == pytest.approx(alone.history[-1]["d_loss"], rel=1e-4)
    assert not np.allclose(*np.asarray(jax.tree.leaves(together.state.params)[0]))  # the seeds differ


# ------------------------------------------------------------------------------ experiments


def test_gan_nash_matches_the_closed_forms(tmp_path):
    from experiments import gan_nash

    s = _run(gan_nash, tmp_path, num_steps=60, table_learning_rates=(0.1, 0.5))
    assert s["max_relative_error"] < 1e-12  # simultaneous steps: radius x sqrt(1 + lr^2) per step
    assert s["max_alternating_invariant_drift"] < 1e-12  # alternating steps conserve x^2 - lr xy + y^2
    assert s["simultaneous_growth"] == pytest.approx((1 + 0.1**2) ** 0.5, rel=1e-12)
    assert s["extragradient_final_radius"] < 2**0.5 < s["alternating_radius_max"] + 1e-9
    assert (tmp_path / "trajectories.png").exists()


@pytest.mark.slow
def test_gan_mode_collapse_smoke_and_exact_resume(tmp_path):
    from experiments import gan_mode_collapse

    tiny = dict(steps=4, num_seeds=2, batch_size=16, hidden=8, depth=1, datasets=("grid",),
                methods=("gan", "wgan_gp"), num_samples=50, eval_every=2, log_every=2, checkpoint_every=2,
                keep_checkpoints=2)
    s = _run(gan_mode_collapse, tmp_path, **tiny)
    samples = np.load(tmp_path / "samples_grid_wgan_gp.npy")
    assert samples.shape == (2, 50, 2)
    assert set(s["target_met"]) == {"grid"}
    assert "grid/gan" in s and (tmp_path / "samples_grid.png").exists()
    assert all(0 <= s["grid/gan"][f"{k}_mean"] <= 1 for k in ("precision", "recall", "coverage"))
    # as if killed after the step-2 checkpoint: the resumed run ends with the same parameters
    for method in tiny["methods"]:
        shutil.rmtree(tmp_path / f"grid_{method}" / "checkpoints" / "4")
    resumed = _run(gan_mode_collapse, tmp_path, **tiny)
    assert resumed["params_digest"] == s["params_digest"]
    assert np.array_equal(np.load(tmp_path / "samples_grid_wgan_gp.npy"), samples)


@pytest.mark.slow
def test_gan_mnist_smoke_with_every_switch(tmp_path):
    from experiments import gan_mnist
    from tests.test_vae_experiment import beside_a_random_classifier  # the FID features' classifier

    workdir = beside_a_random_classifier(tmp_path, "gan_mnist")
    s = _run(gan_mnist, workdir, variants=("gan+ls+fm+mbd+ha+vbn+noise+r1+ema", "wgan"), steps=2,
             batch_size=8, width=4, feature_dim=8, minibatch_kernels=2, minibatch_dim=2, vbn_reference_size=4,
             noise_anneal_steps=2, num_eval_samples=32, eval_every=2, log_every=2, checkpoint_every=2,
             data_source="embedded")
    assert np.isfinite(s["wgan/fid"]) and s["best_variant"] in ("gan+ls+fm+mbd+ha+vbn+noise+r1+ema", "wgan")
    assert [g["label"] for g in s["generators"]] == ["DCGAN gan+ls+fm+mbd+ha+vbn+noise+r1+ema", "WGAN"]
    assert all(np.isfinite(g["fid"]) and g["seconds_per_1000"] > 0 for g in s["generators"])
    # precision/recall/density/coverage beside FID (genjax.metrics.prdc): fractions, density >= 0
    for g in s["generators"]:
        assert all(0 <= g[k] <= 1 for k in ("precision", "recall", "coverage")) and g["density"] >= 0
    assert set(s["real_prdc"]) == {"precision", "recall", "density", "coverage"}
    samples = np.load(workdir / "samples.npy")
    assert samples.shape == (32, 28, 28, 1) and 0.0 <= samples.min() and samples.max() <= 1.0
    history = report.read_jsonl(workdir / "wgan" / "metrics.jsonl")
    assert "wasserstein" in history[-1] and "eval/fid" in history[-1]


@pytest.mark.slow
def test_gan_vanishing_gradients_smoke(tmp_path):
    from experiments import gan_vanishing_gradients as gvg

    # batch 128: one epoch is 70 DCGAN steps, and the programs stay small (on CPU the convolutions'
    # weight gradients run in blocks of 16 examples: batch 1024 compiled for about twice as long)
    tiny = dict(manifold_dims=(1,), ambient_dim=8, supports_steps=30, generator_epochs=(1,), steps=4, log_every=2,
                checkpoint_every=2, measure_every=2, width=4, batch_size=128, data_source="embedded",
                keep_checkpoints=2)
    s = _run(gvg, tmp_path, **tiny)
    assert set(s["supports"]) == {"k = 1 in R^8", "full-dimensional control (R^8)"}
    for row in s["arjovsky_bottou"].values():
        assert all(np.isfinite(v) for v in row.values())
    assert (tmp_path / "generator_epoch1.msgpack").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["params_digest"] == s["params_digest"]
    # the probes train one replica per generator snapshot (fit(replicas=True)); as if killed after
    # their step-2 checkpoints, the resumed probes end with the same parameters
    history = report.read_jsonl(tmp_path / "discriminator" / "metrics.jsonl")
    assert [r["step"] for r in history] == [2, 4] and np.shape(history[-1]["grad_minimax"]) == (1,)
    for probe in ("discriminator", "critic"):
        shutil.rmtree(tmp_path / probe / "checkpoints" / "4")
    resumed = _run(gvg, tmp_path, **tiny)
    assert resumed["params_digest"] == s["params_digest"]
    assert resumed["arjovsky_bottou"] == s["arjovsky_bottou"]


def test_the_ema_switch_averages_the_generator_alone_with_the_warm_up_rule():
    """`gan+ema`: after one step extras["ema_params"]["generator"] = d g_0 + (1 - d) g_1 with
    d = min(decay, 2 / 11) (genjax.train.with_ema's warm-up at n = 1), the discriminator is not
    averaged, and training itself is the plain variant's, bit for bit."""
    import jax

    from experiments import gan_mnist

    cfg = gan_mnist.EXPERIMENT.make_config(quick=True, variants=("gan+ema",), width=4, feature_dim=8, batch_size=4)
    built, plain = gan_mnist.build(cfg, "gan+ema"), gan_mnist.build(cfg, "gan")
    state, plain_state = built.init(jax.random.key(0)), plain.init(jax.random.key(0))
    assert set(state.extras["ema_params"]) == {"generator"}
    # one critic draw of 4 images (experiments._gan_common.ImageSource's layout)
    batch = {"image": np.random.default_rng(0).integers(0, 256, (1, 4, 28, 28, 1), dtype=np.uint8)}
    g0 = state.params["generator"]
    new, _ = jax.jit(built.step)(state, batch)
    new_plain, _ = jax.jit(plain.step)(plain_state, batch)
    d = min(cfg.generator_ema_decay, 2.0 / 11.0)
    expected = jax.tree.map(lambda a, b: d * a + (1 - d) * b, g0, new.params["generator"])
    for got, want in zip(jax.tree.leaves(new.extras["ema_params"]["generator"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new_plain.params)):
        np.testing.assert_array_equal(a, b)
    assert built.apply_fn(new) is new.extras["ema_params"]["generator"]
