"""A tiny training run used by the runtime tests in subprocesses (pmap on virtual devices,
several processes, SIGKILL and resume). Prints one JSON line with the final parameter digest.

    python tests/train_worker.py --mode single|pmap|sharded|dist [--workdir D] [--steps N] ...
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="single", choices=["single", "pmap", "sharded", "dist"])
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
    args = p.parse_args()

    import jax

    from genjax import train

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
