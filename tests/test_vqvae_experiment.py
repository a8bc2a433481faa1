"""experiments.vqvae: a smoke run smaller than --quick, the saved autoencoder and its loader, resume."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import vqvae
from experiments._framework import ConfigError, run_experiment
from genjax import data, nn, report
from genjax.nn import _vqvae

TINY = dict(steps=4, batch_size=8, channels=(4, 8), res_hidden=4, latent_dim=4, num_codes=16, betas=(0.25,),
            checkpoint_every=2, log_every=2, eval_every=4, data_source="embedded", prior_steps=2, prior_batch_size=8,
            prior_width=8, prior_layers=1, prior_heads=2, fid_samples=16, codebooks=("ema",),
            quantizers=("fsq", "lfq", "rvq", "ema_rotation"))  # K = 16: FSQ (4, 4), LFQ 4 bits, RVQ 2 x 4


@pytest.mark.parametrize("strides,kernel,in_shape", [(1, (3, 3), (2, 7, 7, 5)), (2, (4, 4), (2, 14, 14, 3)),
                                                     (1, (1, 1), (2, 7, 7, 4)), (2, (3, 3), (1, 9, 9, 2))])
def test_the_vqvae_convolutions_equal_flax_conv(strides, kernel, in_shape):
    """Reference: flax.linen.Conv, i.e. XLA's convolution and its autodiff gradients."""
    import flax.linen as fnn

    x = jnp.asarray(np.random.default_rng(0).normal(size=in_shape), jnp.float32)
    ref, mine = fnn.Conv(6, kernel, strides), nn.Conv(6, kernel, strides)
    params = jax.jit(ref.init)(jax.random.key(0), x)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    np.testing.assert_allclose(jax.jit(mine.apply)(params, x), jax.jit(ref.apply)(params, x), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(loss(mine), (0, 1)))(params, x)),
                    jax.tree.leaves(jax.jit(jax.grad(loss(ref), (0, 1)))(params, x))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_encoder_and_decoder_shapes():
    enc, dec = _vqvae.VQVAEEncoder(latent_dim=3, channels=(4, 8)), _vqvae.VQVAEDecoder(out_channels=1, channels=(4, 8))
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    z = jax.eval_shape(lambda x: enc.apply(enc.init(jax.random.key(0), x), x), x)
    assert z.shape == (2, 7, 7, 3)
    assert jax.eval_shape(lambda z: dec.apply(dec.init(jax.random.key(1), z), z), z).shape == (2, 28, 28, 1)
    with pytest.raises(ValueError, match="divisible by 4"):
        jax.eval_shape(enc.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 30, 30, 1), jnp.float32))


def test_tiny_run_writes_the_report_and_a_loadable_autoencoder(tmp_path):
    from tests.test_vae_experiment import beside_a_random_classifier

    tmp_path = beside_a_random_classifier(tmp_path, "vqvae")
    exp = vqvae.EXPERIMENT
    config = exp.make_config(**TINY)
    summary = run_experiment(exp, config, tmp_path)
    names = ["ema_beta0.25", "fsq", "lfq_beta0.25", "rvq_beta0.25", "ema_rotation_beta0.25"]
    assert sorted(summary["variants"]) == sorted(names)
    for name in names:
        v = summary["variants"][name]
        assert v["steps"] == 4 and 1.0 <= v["perplexity"] <= 16 and 1 <= v["codes_used"] <= v["num_codes"] == 16
        assert 0.0 < v["recon_mse"] < 0.5 and v["bits_per_image"] == 49 * 4
        assert [r["step"] for r in report.read_jsonl(tmp_path / name / "metrics.jsonl")] == [2, 4]
        # dead codes: logged for each interval, the last one the table's
        assert [s for s, _ in v["dead_codes_history"]] == [2, 4] and v["dead_codes"] == v["dead_codes_history"][-1][1]
        assert all(0 <= d < 16 for _, d in v["dead_codes_history"])
    assert set(summary["target"]) == {"fsq", "ema_rotation_beta0.25"}
    assert summary["main_variant"] == "ema_beta0.25" and summary["params_digest"]
    assert not (tmp_path / "beta_sweep.png").exists()  # one beta: no sweep to draw
    for f in ("reconstructions.png", "codebook_usage.png", "training_curves.png", "dead_codes.png",
              "report.md",
              "summary.json", "autoencoder.msgpack", "autoencoder.json", "prior_samples.png", "samples.npy"):
        assert (tmp_path / f).is_file(), f
    md = (tmp_path / "report.md").read_text()
    assert "| EMA codebook | 0.25 |" in md  # (the codebook loss: test_vq's and the default config's)
    assert "| FSQ | - | levels (4, 4), d = 2 | 4.00 / 196 |" in md and "| LFQ | 0.25 | 4 bits |" in md
    # the code prior's samples, decoded and scored, in the record the tour plots
    (generator,) = summary["generators"]
    assert generator["label"] == "VQ-VAE + prior" and generator["num_samples"] == 16
    assert all(np.isfinite(generator[k]) for k in ("fid", "kid", "train_seconds", "seconds_per_1000", "real_fid"))
    assert all(0 <= generator[k] <= 1 for k in ("precision", "recall", "coverage"))  # beside FID (issue 20)
    assert generator["fid"] >= 0 and generator["train_seconds"] > summary["prior"]["train_seconds"] > 0
    assert summary["prior"]["steps"] == 2 and np.isfinite(summary["prior"]["heldout_nll"])

    # the loader the latent-diffusion experiment uses
    encode, decode, info = vqvae.load_autoencoder(tmp_path)
    images = data.load_images("mnist", "test", source="embedded").images[:5]  # uint8 [5, 28, 28, 1]
    z, idx = encode(images)
    assert z.shape == (5, 7, 7, 4) and z.dtype == np.float32 and idx.shape == (5, 7, 7)
    z_float, _ = encode(images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(z_float, z, atol=1e-6)
    x = decode(z)
    assert x.shape == (5, 28, 28, 1) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    np.testing.assert_allclose(decode(info["codebook"][np.asarray(idx)]), x, atol=1e-6)  # decode snaps to codes
    assert decode(z, quantize=False).shape == (5, 28, 28, 1)
    assert info["latent_shape"] == [7, 7, 4] and info["num_codes"] == 16 and info["codebook"].shape == (16, 4)
    assert info["latent_std"] > 0 and info["held_out"]["recon_mse"] == summary["recon_mse"]
    with pytest.raises(ValueError, match=r"encode expects images \[B, 28, 28, 1\]"):
        encode(images[..., 0])
    with pytest.raises(FileNotFoundError, match="no trained VQ-VAE autoencoder"):
        vqvae.load_autoencoder(tmp_path / "fsq")

    # re-running on the same workdir resumes every variant from its last checkpoint
    again = run_experiment(exp, config, tmp_path)
    assert again["params_digest"] == summary["params_digest"]
    assert all(v["resumed_from"] == 4 for v in again["variants"].values())


def test_prior_weight_decay_is_decoupled_adamw():
    """--prior-weight-decay w > 0 trains the code prior with AdamW (Loshchilov & Hutter 2019:
    theta <- theta - lr (adam_update + w theta)). The schedule warms up from 0, so the first step
    leaves the parameters alone in both runs while updating identical Adam moments; the second
    differs by exactly -lr(1) w theta_0, with lr(1) = peak / warm-up steps (optax's linear warm-up)."""
    exp = vqvae.EXPERIMENT
    codes = {"codes": jnp.asarray(np.random.default_rng(0).integers(0, 16, (8, 9)), jnp.int32)}
    params = {}
    for w in (0.0, 0.5):
        cfg = exp.make_config(**{**TINY, "prior_steps": 40, "prior_weight_decay": w})
        built = vqvae.build_prior(cfg, num_codes=16, length=9)
        state = built.init(jax.random.key(0))
        theta0 = state.params
        for _ in range(2):
            state, _ = jax.jit(built.step)(state, codes)
        params[w] = state.params
    lr1 = 1e-3 / 4  # the default prior_learning_rate, warm-up min(200, 40 // 10) = 4 steps
    assert exp.make_config(**TINY).prior_learning_rate == 1e-3
    for a, b, t in zip(jax.tree.leaves(params[0.5]), jax.tree.leaves(params[0.0]), jax.tree.leaves(theta0)):
        np.testing.assert_allclose(a - b, -lr1 * 0.5 * t, atol=1e-7)
    assert any(float(jnp.abs(t).max()) > 0.05 for t in jax.tree.leaves(theta0))  # the difference is visible
    with pytest.raises(ConfigError, match=r"--prior-weight-decay: expected a finite number in \[0, 1\)"):
        exp.make_config(prior_weight_decay=-0.1)


def test_prior_dropout_is_in_the_training_loss_only():
    """--prior-dropout p: the training loss of the prior uses dropout, with the mask drawn from
    the step's key; `loss_fn` (the held-out NLL) stays deterministic. At p = 0 the training
    loss is the NLL per code exactly (the same numbers as before the option existed)."""
    exp = vqvae.EXPERIMENT
    codes = {"codes": jnp.asarray(np.random.default_rng(0).integers(0, 16, (8, 9)), jnp.int32)}
    losses = {}
    for p in (0.0, 0.3):
        built = vqvae.build_prior(exp.make_config(**{**TINY, "prior_dropout": p}), num_codes=16, length=9)
        state = built.init(jax.random.key(0))
        _, metrics = jax.jit(built.step)(state, codes)
        nll = float(jnp.mean(jax.jit(built.loss_fn)(state.params, codes["codes"]))) / 9
        losses[p] = (float(metrics["loss"]), nll)
        assert built.model.dropout == p
    assert losses[0.0][0] == pytest.approx(losses[0.0][1], rel=1e-6)
    assert losses[0.3][1] == pytest.approx(losses[0.0][1], rel=1e-6)  # the same init, deterministic NLL
    assert abs(losses[0.3][0] - losses[0.3][1]) > 1e-3
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match=r"--prior-dropout must be a rate in \[0, 1\)"):
            vqvae.check_config(exp.make_config(**{**TINY, "prior_dropout": bad}))


def test_config_is_checked():
    exp = vqvae.EXPERIMENT
    with pytest.raises(ConfigError, match="--main-beta 0.5 must be one of --betas"):
        vqvae.check_config(exp.make_config(main_beta=0.5))
    with pytest.raises(ConfigError, match="--codebooks must be a non-empty subset"):
        vqvae.check_config(exp.make_config(codebooks="ema,kmeans"))
    with pytest.raises(ConfigError, match="--quantizers must be distinct names"):
        exp.make_config(quantizers=("fsq", "vqgan"))
    with pytest.raises(ConfigError, match="--main-quantizer 'lfq' must be one of"):
        exp.make_config(quantizers=("fsq",), main_quantizer="lfq")
    with pytest.raises(ConfigError, match="--fsq-levels must be given for --num-codes 100"):
        exp.make_config(num_codes=100)
    with pytest.raises(ConfigError, match="lfq needs --num-codes a power of 2"):
        exp.make_config(num_codes=100, fsq_levels=(4, 5, 5))
    assert vqvae.fsq_levels_for(128) == (8, 4, 4) and vqvae.fsq_levels_for(1024) == (8, 8, 4, 4)
    config, _, quick, _ = exp.parse_args(["--quick", "--betas", "0.25,2", "--codebooks", "ema"])
    assert quick and config.betas == (0.25, 2.0) and config.codebooks == ("ema",)
    assert config.steps == vqvae.QUICK["steps"]


def test_latent_statistics_cover_every_image():
    """7 images in batches of 3: the statistics are those of all 7 images' latents (computed here
    directly, in float64); the old loop used whole batches only and left the 7th image out."""
    from genjax import vq

    model = vqvae.Autoencoder(latent_dim=2, channels=(2, 4), res_blocks=1, res_hidden=2, out_channels=1)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda k: model.init(k, (8, 8, 1)), jax.random.key(0))
    params = jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    codebook = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
    images = rng.integers(0, 256, (7, 8, 8, 1)).astype(np.uint8)
    images[6] = 255  # an outlier in the last, partial batch
    stats = vqvae.latent_statistics(model, params, codebook, images, batch_size=3)
    z = np.asarray(model.encode(params, jnp.asarray(images, jnp.float32) / 255.0), np.float64)  # [7, 2, 2, 2]
    z_q = np.asarray(vq.quantize(jnp.asarray(z, jnp.float32), codebook)[0], np.float64)
    np.testing.assert_allclose(stats["latent_mean"], z.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["latent_std"], z.std(), rtol=1e-5)
    np.testing.assert_allclose(stats["quantized_latent_mean"], z_q.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["quantized_latent_std"], z_q.std(), rtol=1e-5)


def test_an_fsq_autoencoder_saves_and_loads(tmp_path):
    """The loader of an FSQ autoencoder: latents are FSQ's bounded values, `decode` snaps them to
    the FSQ grid, i.e. `decode(z) == decode(fsq-rounded z, quantize=False)`, and equals decoding
    `info["codebook"][idx]`; snapping the bounded latents gives `vq.fsq`'s codes and indices."""
    from genjax import vq

    levels = (4, 3)
    quantizer = vqvae.Quantizer("fsq", levels, len(levels))
    model = vqvae.Autoencoder(latent_dim=2, channels=(2, 4), res_blocks=1, res_hidden=2, out_channels=1)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda k: model.init(k, (8, 8, 1)), jax.random.key(0))
    params = jax.tree.map(lambda s: (0.8 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    info = {"image_shape": [8, 8, 1], "latent_shape": [2, 2, 2], "num_codes": 12, "quantizer": quantizer.config(),
            "latent_mean": 0.0, "latent_std": 1.0}
    vqvae.save_autoencoder(tmp_path, model, params, quantizer.codebook(None), info)
    encode, decode, loaded = vqvae.load_autoencoder(tmp_path)
    assert loaded["quantizer"] == {"kind": "fsq", "levels": [4, 3], "dim": 2} and loaded["codebook"].shape == (12, 2)
    images = rng.integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    z, idx = encode(images)
    assert z.shape == (3, 2, 2, 2) and idx.shape == (3, 2, 2) and float(jnp.max(jnp.abs(z))) <= 1.002  # the bound: +- (1 + 1e-3)
    raw = model.encode(params, jnp.asarray(images, jnp.float32) / 255.0)
    codes, ref_idx = vq.fsq(raw, levels)
    np.testing.assert_array_equal(idx, ref_idx)
    rounded = vq.fsq_indices_to_codes(vq.fsq_codes_to_indices(z, levels), levels)
    np.testing.assert_allclose(rounded, codes, atol=1e-6)
    x = decode(z)
    assert x.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(x, decode(rounded, quantize=False), atol=1e-6)
    np.testing.assert_allclose(x, decode(loaded["codebook"][np.asarray(idx)]), atol=1e-6)  # idempotent on codes
