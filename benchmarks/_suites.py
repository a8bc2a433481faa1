"""The benchmark suites and their config.

Names are `<suite>/<subject>/<variant>`, so that `--only` selects by any part of them:

- `divergences/<function>/<forward|grad>/b<B>`: every public function of `genjax.divergences`,
  jitted, on a batch of B rows of `event_size` entries (distributions over `event_size`
  categories, `event_size` latent dimensions, or `event_size` samples; `mutual_information` on
  B joint tables of side round(sqrt(event_size))). `forward` is the per-example values, `grad` is
  `jax.value_and_grad` of their sum with respect to every array argument that a user would
  differentiate. An example is one row.
- `train_step/mnist_classifier/<dispatch|fused>`: the train step of `experiments.mnist_classifier`
  (its model, AdamW and loss, `genjax.train.make_train_step`) at batch `train_batch_size` on
  synthetic uint8 images. `dispatch` is a Python loop over the jitted single step, `fused_steps`
  calls per repetition with one sync at the end (times are per step); `fused` is
  `genjax.train.compile_fused`: the same `fused_steps` steps in one `lax.scan` (times are per call
  of K steps). Compare them by steps/s.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from benchmarks._harness import MIN_REPEATS, Benchmark, Case


@dataclasses.dataclass(frozen=True)
class Config:
    """The full suite; `QUICK` is the documented smaller one (`--quick`), same code path."""

    batch_sizes: tuple[int, ...] = (64, 1024, 8192)  # divergences: rows per call
    event_size: int = 1000  # divergences: entries per row
    train_batch_size: int = 128  # train_step: examples per step
    fused_steps: int = 50  # train_step: K, steps per fused call and per dispatch repetition
    repeats: int = 7  # timed repetitions per benchmark (>= 5)
    warmup: int = 1  # untimed repetitions after the first call
    peak_matmul_size: int = 2048  # CPU: n of the float32 matmul that measures the peak
    seed: int = 0  # inputs (timings do not depend on their values)

    def __post_init__(self):
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if self.repeats < MIN_REPEATS:
            raise ValueError(f"repeats must be >= {MIN_REPEATS}, got {self.repeats}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        for name in ("event_size", "train_batch_size", "fused_steps", "peak_matmul_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


QUICK: dict[str, Any] = {"batch_sizes": (64, 1024), "fused_steps": 10, "repeats": 5}


# -------------------------------------------------------------------------------- divergences

# function -> (argument kinds, positions differentiated by the `grad` variant). Kinds:
# "probs" softmax rows [B, N]; "logits" [B, N]; "joint" normalised tables [B, S, S];
# "unit" values in (0, 1) [B, N]; "rate" a scalar target (the sparse-autoencoder rho);
# "normal" standard normal [B, N] (Gaussian means / log-variances, or 1-D samples).
DIVERGENCE_ARGS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "entropy": (("probs",), (0,)),
    "cross_entropy": (("probs", "probs"), (0, 1)),
    "kl_divergence": (("probs", "probs"), (0, 1)),
    "js_divergence": (("probs", "probs"), (0, 1)),
    "mutual_information": (("joint",), (0,)),
    "entropy_from_logits": (("logits",), (0,)),
    "cross_entropy_from_logits": (("logits", "logits"), (0, 1)),
    "kl_divergence_from_logits": (("logits", "logits"), (0, 1)),
    "js_divergence_from_logits": (("logits", "logits"), (0, 1)),
    "bernoulli_kl": (("rate", "unit"), (1,)),  # bernoulli_kl(rho, rho_hat)
    "gaussian_kl": (("normal", "normal"), (0, 1)),  # gaussian_kl(mean_q, logvar_q) vs N(0, I)
    "wasserstein_1d": (("normal", "normal"), (0, 1)),
}


def _input_shape(kind: str, batch: int, n: int) -> tuple[int, ...]:
    if kind == "rate":
        return ()
    if kind == "joint":
        side = max(1, round(math.sqrt(n)))
        return (batch, side, side)
    return (batch, n)


def _make_input(kind: str, key, shape: tuple[int, ...]):
    import jax
    import jax.numpy as jnp

    if kind == "rate":
        return jnp.asarray(0.05, jnp.float32)
    if kind == "unit":
        return jax.random.uniform(key, shape, jnp.float32, minval=0.01, maxval=0.99)
    x = jax.random.normal(key, shape, jnp.float32)
    if kind == "probs":
        return jax.nn.softmax(x, axis=-1)
    if kind == "joint":
        return jax.nn.softmax(x.reshape(shape[0], -1), axis=-1).reshape(shape)
    if kind == "logits":
        return 3.0 * x
    if kind == "normal":
        return x
    raise ValueError(f"unknown input kind {kind!r}")


def _divergence_benchmark(config: Config, name: str, mode: str, batch: int) -> Benchmark:
    kinds, argnums = DIVERGENCE_ARGS[name]
    shapes = [_input_shape(k, batch, config.event_size) for k in kinds]

    def setup() -> Case:
        import jax
        import jax.numpy as jnp

        from genjax import divergences

        f = getattr(divergences, name)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), batch), len(kinds))
        args = tuple(_make_input(k, key, s) for k, key, s in zip(kinds, keys, shapes))
        if mode == "forward":

            def fn(*a):
                return f(*a)  # [B] (bernoulli_kl: [B, N])

        else:

            def total(*a):
                return jnp.sum(f(*a))

            fn = jax.value_and_grad(total, argnums=argnums)
        return Case(fn=fn, args=args, examples_per_call=batch)

    return Benchmark(
        name=f"divergences/{name}/{mode}/b{batch}",
        setup=setup,
        config={
            "suite": "divergences",
            "function": f"genjax.divergences.{name}",
            "mode": mode,
            "batch": batch,
            "arg_shapes": [list(s) for s in shapes],
            "dtype": "float32",
            "differentiated_args": list(argnums) if mode == "grad" else [],
        },
    )


def divergence_benchmarks(config: Config) -> list[Benchmark]:
    return [
        _divergence_benchmark(config, name, mode, int(batch))
        for name in DIVERGENCE_ARGS
        for mode in ("forward", "grad")
        for batch in config.batch_sizes
    ]


# --------------------------------------------------------------------------------- train step

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def _train_step_benchmark(config: Config, mode: str) -> Benchmark:
    batch, k = config.train_batch_size, config.fused_steps

    def setup() -> Case:
        import jax
        import jax.numpy as jnp

        from experiments import mnist_classifier
        from genjax import train

        cfg = mnist_classifier.Config(batch_size=batch)
        _, init, loss_fn = mnist_classifier.build(cfg, NUM_CLASSES)
        key = jax.random.key(config.seed)
        state = init(jax.random.fold_in(key, 0), IMAGE_SHAPE)
        step = train.make_train_step(loss_fn)
        k_img, k_lab = jax.random.split(jax.random.fold_in(key, 1))
        steps = k if mode == "fused" else 1
        batches = {
            "image": jax.random.randint(k_img, (steps, batch, *IMAGE_SHAPE), 0, 256).astype(jnp.uint8),
            "label": jax.random.randint(k_lab, (steps, batch), 0, NUM_CLASSES).astype(jnp.int32),
        }
        if mode == "fused":  # one call = K steps in one lax.scan; the state is donated
            return Case(fn=train.compile_fused(step), args=(state, batches), donate_argnums=(0,),
                        carry=True, steps_per_call=k, examples_per_call=k * batch, loop_trip_count=k)
        single = jax.tree.map(lambda x: x[0], batches)  # the same batch every step
        return Case(fn=jax.jit(step, donate_argnums=0), args=(state, single), donate_argnums=(0,),
                    carry=True, calls_per_rep=k, steps_per_call=1, examples_per_call=batch)

    return Benchmark(
        name=f"train_step/mnist_classifier/{mode}",
        setup=setup,
        config={
            "suite": "train_step",
            "model": "experiments.mnist_classifier (genjax.nn.MnistClassifier, AdamW)",
            "mode": mode,
            "batch": batch,
            "fused_steps": k,
            "image_shape": list(IMAGE_SHAPE),
            "data": "synthetic uint8 images, int32 labels",
            "timing": ("one call = K steps in one lax.scan" if mode == "fused" else
                       "K jitted single-step calls per repetition, one sync; times per step"),
        },
    )


def train_step_benchmarks(config: Config) -> list[Benchmark]:
    return [_train_step_benchmark(config, mode) for mode in ("dispatch", "fused")]


def all_benchmarks(config: Config) -> list[Benchmark]:
    """Every benchmark, in run order (cheap: inputs are built only when one runs)."""
    return divergence_benchmarks(config) + train_step_benchmarks(config)
