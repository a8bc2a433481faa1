"""Data-parallel VQ statistics, run by tests/test_vq.py in a subprocess with several virtual CPU
devices (XLA_FLAGS=--xla_force_host_platform_device_count=4). Prints one JSON line with the largest
differences between the pmap results and one device on the whole batch.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/vq_worker.py
"""

from __future__ import annotations

import json
import sys

import numpy as np


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def statistics() -> dict:
    """ema_update, codebook_usage, perplexity and restart_dead_codes with `axis_name`."""
    import jax

    from genjax import vq

    n = jax.device_count()
    rng = np.random.default_rng(0)
    k, d = 16, 3
    codebook = rng.normal(size=(k, d)).astype(np.float32)
    batches = [(rng.normal(size=(n * 6, 5, 5, d)) + 0.3 * t).astype(np.float32) for t in range(3)]  # global
    key = jax.random.key(42)

    def update(state, z, axis_name=None):
        _, idx = vq.quantize(z, state.codebook)
        new = vq.ema_update(state, z, idx, decay=0.9, eps=1e-5, axis_name=axis_name)
        usage = vq.codebook_usage(idx, k, axis_name=axis_name)
        perplexity = vq.perplexity(idx, k, axis_name=axis_name)
        restarted = vq.restart_dead_codes(key, new, z, threshold=30.0, axis_name=axis_name)
        return new, idx, usage, perplexity, restarted

    single = jax.jit(update)
    parallel = jax.pmap(lambda s, z: update(s, z, axis_name="data"), axis_name="data")

    out = {"indices_equal": True, "usage_equal": True, "codebook_max_diff": 0.0, "cluster_size_max_diff": 0.0,
           "perplexity_diff": 0.0, "restart_max_diff": 0.0, "restart_replicas_identical": True, "restarted": 0}
    s1 = vq.ema_init(codebook)
    sp = jax.tree.map(lambda x: np.broadcast_to(x, (n, *np.shape(x))), vq.ema_init(codebook))
    for z in batches:
        s1, idx1, usage1, perp1, restart1 = single(s1, z)
        sp, idxp, usagep, perpp, restartp = parallel(sp, z.reshape(n, -1, *z.shape[1:]))
        out["indices_equal"] &= bool(np.array_equal(np.asarray(idxp).reshape(idx1.shape), idx1))
        out["usage_equal"] &= bool(all(np.array_equal(u, usage1) for u in np.asarray(usagep)))
        out["codebook_max_diff"] = max(out["codebook_max_diff"], max_diff(sp.codebook[0], s1.codebook))
        out["cluster_size_max_diff"] = max(out["cluster_size_max_diff"], max_diff(sp.cluster_size[0], s1.cluster_size))
        out["perplexity_diff"] = max(out["perplexity_diff"], max_diff(perpp, np.full(n, perp1)))
        out["restart_max_diff"] = max(out["restart_max_diff"], max_diff(restartp.codebook[0], restart1.codebook))
        books = np.asarray(restartp.codebook)  # [devices, K, D]
        out["restart_replicas_identical"] &= bool(np.all(books == books[:1]))
        out["restarted"] += int(np.sum(np.asarray(restart1.cluster_size) == 0))
    return out


def training() -> dict:
    """Two steps of the VQ-VAE experiment's EMA step under pmap vs on one device."""
    import jax

    from experiments.vqvae import Config, build
    from genjax import data, train

    cfg = Config(channels=(2, 4), res_blocks=0, num_codes=16, latent_dim=4, batch_size=8)
    images = np.random.default_rng(1).integers(0, 256, size=(64, 28, 28, 1)).astype(np.uint8)
    loader = data.ArrayLoader({"image": images}, batch_size=cfg.batch_size, seed=0)
    built = build(cfg, (28, 28, 1), "ema", 0.25, data_variance=0.1)
    init, step = built.init, built.step
    runs = {
        mode: train.fit(init(jax.random.key(0)), step, loader, num_steps=2, log_every=2, parallel=mode, progress=False)
        for mode in ("none", "pmap")
    }
    a, b = runs["none"].state, runs["pmap"].state
    params_diff = max(max_diff(x, y) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    return {
        "train_params_max_diff": params_diff,
        "train_codebook_max_diff": max_diff(a.extras["codebook"].codebook, b.extras["codebook"].codebook),
    }


def main() -> int:
    import jax

    result = {"devices": jax.device_count(), **statistics(), **training()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
