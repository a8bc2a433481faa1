"""A tiny training run used by the runtime tests in subprocesses (virtual devices, several
processes, SIGKILL and resume). Prints one JSON line with the final parameter digest.

    python tests/train_worker.py --mode single|pmap|sharded|dist [--workdir D] [--steps N] ...

`--mode devices` instead runs every parallel mode on this process's devices (start it with
XLA_FLAGS=--xla_force_host_platform_device_count=N) against one device on the whole batch, and
prints the largest differences (`device_checks`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


class RegressionSource:
    """Batches of a fixed linear-regression problem, a pure function of (seed, step).

    With `process_count > 1` a process returns only its contiguous slice of the global batch.
    """

    def __init__(self, seed: int, batch_size: int, process_index: int = 0, process_count: int = 1):
        self.seed, self.batch_size = seed, batch_size
        self.lo = process_index * batch_size // process_count
        self.hi = (process_index + 1) * batch_size // process_count

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        x = rng.normal(size=(self.batch_size, 8)).astype(np.float32)
        w = np.linspace(-1.0, 1.0, 8, dtype=np.float32)
        y = np.tanh(x @ w)[:, None].astype(np.float32)
        return {"x": x[self.lo : self.hi], "y": y[self.lo : self.hi]}

    def batches(self, start: int, k: int) -> dict[str, np.ndarray]:
        parts = [self.batch(start + i) for i in range(k)]
        return {n: np.stack([p[n] for p in parts]) for n in parts[0]}


def make(noise: float, lr: float = 1e-2):
    import jax
    import jax.numpy as jnp
    import optax

    from genjax import train

    def init(key):
        k1, k2 = jax.random.split(key)
        params = {
            "w1": jax.random.normal(k1, (8, 32)) / np.sqrt(8),
            "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 1)) / np.sqrt(32),
            "b2": jnp.zeros(1),
        }
        return train.TrainState.create(params=params, tx=optax.adam(lr), key=key,
                                       extras={"ema": jax.tree.map(jnp.copy, params)})

    def loss_fn(params, batch, key, state):
        x = batch["x"]
        if noise:  # input noise drawn from the step key: tests that resume redraws the same noise
            x = x + noise * jax.random.normal(key, x.shape)
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        pred = h @ params["w2"] + params["b2"]
        loss = jnp.mean((pred - batch["y"]) ** 2)
        ema = train.ema_update(state.extras["ema"], params, 0.9)
        return loss, ({"abs_err": jnp.mean(jnp.abs(pred - batch["y"]))}, {"ema": ema})

    return init, train.make_train_step(loss_fn)


def max_diff(a, b) -> float:
    """The largest absolute difference between two pytrees of arrays (of the same structure)."""
    import jax

    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in pairs
                if np.size(x)), default=0.0)


def device_checks(steps: int, gan: bool = False) -> dict:
    """Each parallel mode on all of this process's devices against `parallel="none"` on the whole
    batch: the regression model ("sharded", "pmap"), seeds as replicas on the replica x
    data mesh, two steps of the VQ-VAE experiment's EMA-codebook step (cross-device codebook
    statistics, sharded), `vq.ema_update` with `axis_name` under `jax.shard_map` (the explicit
    collective of code written per device), and with `gan` two steps of the grid GAN sharded."""
    import functools
    from pathlib import Path

    import jax
    from jax.sharding import PartitionSpec as P

    from genjax import train, vq

    n = jax.device_count()
    out = {"devices": n, "auto": train.resolve_parallel("auto")}
    kw = dict(num_steps=steps, log_every=max(steps // 2, 1), progress=False)

    # the regression model (no input noise: pmap would draw it per device)
    init, step = make(0.0)
    init = jax.jit(init)  # one compile instead of one per eager op
    source = RegressionSource(0, 16)
    ref = train.fit(init(jax.random.key(0)), step, source, parallel="none", **kw).state
    for mode in ("sharded", "pmap"):
        got = train.fit(init(jax.random.key(0)), step, source, parallel=mode, **kw).state
        out[f"regression/{mode}"] = max_diff((got.params, got.extras), (ref.params, ref.extras))
    if n > 1:  # a batch the data axis cannot split evenly (refused before anything compiles)
        try:
            train.fit(init(jax.random.key(0)), step, RegressionSource(0, n + 1), parallel="sharded", **kw)
        except ValueError as err:
            out["indivisible_batch"] = str(err)

    # seeds as replicas, one source each, on the (replica, data) mesh; input noise from each step key
    init, step = make(0.1)
    init = jax.jit(init)
    for r in (2, 3):
        seeds = list(range(r))
        sources = [RegressionSource(s, 16) for s in seeds]
        states = functools.partial(train.init_replicas, init, train.seed_keys(seeds))
        ref = train.fit(states(), step, sources, replicas=True, parallel="none", **kw).state
        got = train.fit(states(), step, sources, replicas=True, parallel="sharded", **kw).state
        out[f"replicas{r}/diff"] = max_diff((got.params, got.extras), (ref.params, ref.extras))
        out[f"replicas{r}/mesh"] = list(train.sharded_mesh(r).shape.values())
        # where the sharded step puts its inputs (its outputs keep the state's sharding)
        batches = {k: np.stack([s.batches(0, 2)[k] for s in sources]) for k in ("x", "y")}  # [R, K, B, 8]
        _, placed_state, placed = train.compile_fused(step, "sharded", replicas=True, batches_per_replica=True).place(
            states(), batches)
        out[f"replicas{r}/state_spec"] = list(placed_state.params["w1"].sharding.spec)
        out[f"replicas{r}/state_shard"] = list(placed_state.params["w1"].addressable_shards[0].data.shape)
        out[f"replicas{r}/batch_shard"] = list(placed["x"].addressable_shards[0].data.shape)

    # the VQ-VAE experiment's step with the EMA codebook: its counts and sums are over the global batch
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from experiments.vqvae import Config, build
    from genjax import data

    cfg = Config(channels=(2, 4), res_blocks=0, num_codes=16, latent_dim=4, batch_size=16)
    images = np.random.default_rng(1).integers(0, 256, size=(64, 28, 28, 1)).astype(np.uint8)
    loader = data.ArrayLoader({"image": images}, batch_size=cfg.batch_size, seed=0)
    built = build(cfg, (28, 28, 1), "ema", 0.25, data_variance=0.1)
    initial = jax.jit(built.init)(jax.random.key(0))
    vq_runs = {mode: train.fit(initial, built.step, loader, num_steps=2, log_every=2, parallel=mode, progress=False)
               for mode in ("none", "sharded")}
    a, b = vq_runs["none"], vq_runs["sharded"]
    out["vqvae/params"] = max_diff(a.state.params, b.state.params)
    out["vqvae/codebook"] = max_diff(a.state.extras["codebook"], b.state.extras["codebook"])
    out["vqvae/perplexity"] = abs(a.history[-1]["perplexity"] - b.history[-1]["perplexity"])

    # a GAN step on the 25-Gaussian grid: batches [n_critic, B, 2] (batch axis 1), latents drawn
    # from the step key at the global batch's shape (pmap would draw the same ones on every device)
    if gan:
        from experiments import gan_mode_collapse
        from experiments._gan_common import ToySource

        gan = gan_mode_collapse.build(gan_mode_collapse.Config(batch_size=16, hidden=16), "gan", "grid")
        toy = ToySource("grid", 16, 0, draws=gan.options.n_critic)
        initial = jax.jit(gan.init)(jax.random.key(0))
        gan_runs = [train.fit(initial, gan.step, toy, num_steps=2, log_every=2, parallel=mode, batch_axis=1,
                              progress=False).state for mode in ("none", "sharded")]
        out["gan/params"] = max_diff(gan_runs[0].params, gan_runs[1].params)

    # per-device code: ema_update's psum over the data axis under shard_map = the whole batch at once
    rng = np.random.default_rng(0)
    book = vq.ema_init(rng.normal(size=(16, 3)).astype(np.float32))
    z = rng.normal(size=(4 * n, 5, 5, 3)).astype(np.float32)

    def update(state, z, axis_name=None):
        return vq.ema_update(state, z, vq.quantize(z, state.codebook)[1], decay=0.9, axis_name=axis_name)

    per_device = jax.jit(jax.shard_map(functools.partial(update, axis_name=train.DATA_AXIS),
                                       mesh=train.sharded_mesh(), in_specs=(P(), P(train.DATA_AXIS)), out_specs=P()))
    out["shard_map/ema_update"] = max_diff(per_device(book, z), jax.jit(update)(book, z))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="single", choices=["single", "pmap", "sharded", "dist", "devices"])
    p.add_argument("--workdir", default=None)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--dist-parallel", default="pmap", choices=["pmap", "sharded"])
    p.add_argument("--gan", action="store_true", help="--mode devices: also the grid GAN's step")
    args = p.parse_args()

    import jax

    from genjax import train

    if args.mode == "devices":
        print(json.dumps(device_checks(args.steps, gan=args.gan)), flush=True)
        return
    if args.mode == "dist":
        train.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    init, step = make(args.noise)
    source = RegressionSource(args.seed, args.batch_size, jax.process_index(), jax.process_count())
    parallel = {"single": "none", "pmap": "pmap", "sharded": "sharded", "dist": args.dist_parallel}[args.mode]
    result = train.fit(
        init(jax.random.key(args.seed)),
        step,
        source,
        num_steps=args.steps,
        workdir=args.workdir,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        parallel=parallel,
        progress=False,
    )
    params = jax.tree.map(lambda x: np.asarray(x).tolist(), result.state.params)
    print(json.dumps({
        "digest": train.digest(result.state),
        "process": jax.process_index(),
        "devices": jax.device_count(),
        "step": int(result.state.step),
        "resumed_from": result.resumed_from,
        "params": params,
        "ema": jax.tree.map(lambda x: np.asarray(x).tolist(), result.state.extras["ema"]),
        "loss": result.history[-1]["loss"] if result.history else None,
    }), flush=True)
    if args.mode == "dist":
        jax.distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
