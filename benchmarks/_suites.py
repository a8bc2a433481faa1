"""The benchmark suites and their config.

Names are `<suite>/<subject>/<variant>`, so that `--only` selects by any part of them:

- `divergences/<function>/<forward|grad>/b<B>`: every public function of `genjax.divergences`,
  jitted, on a batch of B rows of `event_size` entries (distributions over `event_size`
  categories, `event_size` latent dimensions, or `event_size` samples; `mutual_information` on
  B joint tables of side round(sqrt(event_size))). `forward` is the per-example values, `grad` is
  `jax.value_and_grad` of their sum with respect to every array argument that a user would
  differentiate. An example is one row.
- `losses/<module>.<function>/<forward|grad>/b<B>`: every public loss of `genjax.gan`,
  `genjax.autoencoders`, `genjax.vae`, `genjax.vq` and `genjax.diffusion`, the same way (inputs:
  `benchmarks._losses`).
- `train_step/<family>/<dispatch|fused>[/bf16]`: each model family's train step
  (`benchmarks._families`: vae_mlp, gan_grid, dcgan, vqvae, ddpm_unet, mnist_classifier).
  `dispatch` is a Python loop over the jitted single step, K calls per repetition with one sync
  at the end (times are per step); `fused` is `genjax.train.compile_fused`: the same K steps in
  one `lax.scan` (times are per call of K steps). Compare them by steps/s. K is `fused_steps`
  (`heavy_fused_steps` for the convolutional families). `bf16`: mixed precision, the network in
  bfloat16 with float32 master weights, gradients and loss (`genjax.train.mixed_precision`):
  every family with `dtype="bfloat16"` (`--dtype bfloat16`), vae_mlp alone besides float32 with
  `bf16` (the default). The scaling rows run in `dtype` too (recorded in their config).
- `scaling/<vmap|loop>_seeds/<family>/r<R>`: R independent replicas (seeds) of the fused step as
  one program, `compile_fused(..., replicas=True, replica_mode="vmap" | "loop")` (vectorized, or
  one replica after another inside the program; "auto" picks "loop" on CPU and "vmap" on GPU/TPU).
  steps/s counts replica-steps. Each repetition alternates with one of one seed's plain fused
  step (also a row of its own, `scaling/one_seed/<family>`), and `extra["vs_baseline"]` is the
  median paired ratio of their steps/s: >= 1 means no slower than the seeds one after another.
- `scaling/pmap/<family>/d<D>`: the fused step under `pmap` over D devices, the global batch
  split over them (on one CPU: D virtual devices, in a subprocess started with
  `XLA_FLAGS=--xla_force_host_platform_device_count`).
- `sampling/ddpm/<scan|loop>`: `genjax.diffusion.sample` (the T-step chain in one `lax.scan`) vs
  a Python loop over a jitted denoise-and-step function (the PyTorch-style sampler); samples/s
  is examples/s.
- `torch/vae_mlp/eager`: PyTorch's own example step (eager, CPU threads as PyTorch sets them),
  when `torch` is importable; FLOPs are the JAX step's count.
- `torch/<dcgan|vqvae|ddpm_unet>/eager[_1thread]`: the convolutional families' PyTorch twins
  (`benchmarks._torch_convnets`: same layers, batch, optimizer and update; as many threads as
  the machine has cores, or one), each repetition paired with one of the JAX fused step, so that
  the ratio (`extra["vs_baseline"]`, and `vs_baseline_cpu` in CPU time) compares the two on the
  same machine state.
- `import/genjax`: `import genjax` in a fresh interpreter (median of `repeats` processes).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from benchmarks._harness import MIN_REPEATS, Benchmark, Case, Skip, run_benchmark


@dataclasses.dataclass(frozen=True)
class Config:
    """The full suite; `QUICK` is the documented smaller one (`--quick`), same code path."""

    batch_sizes: tuple[int, ...] = (64, 1024, 8192)  # divergences: rows per call
    event_size: int = 1000  # divergences: entries per row
    train_batch_size: int = 128  # train_step: examples per step (vae_mlp, mnist_classifier)
    fused_steps: int = 20  # train_step: K, steps per fused call and per dispatch repetition
    heavy_fused_steps: int = 4  # K of the convolutional families (dcgan, vqvae, ddpm_unet, classifier)
    ddpm_model: str = "default"  # "default": experiments.ddpm_mnist's U-Net; "quick": its --quick U-Net
    ddpm_batch_size: int = 32  # ddpm_unet train step (the experiment trains with 128)
    seeds: tuple[int, ...] = (1, 2, 4, 8, 16)  # scaling/<vmap|loop>_seeds: replica counts
    vmap_families: tuple[str, ...] = ("vae_mlp", "gan_grid")
    pmap_devices: tuple[int, ...] = (1, 2, 4, 8)  # scaling/pmap: device counts
    pmap_families: tuple[str, ...] = ("vae_mlp",)
    sample_timesteps: int = 1000  # sampling/ddpm: T
    sample_batch: int = 16  # sampling/ddpm: samples per call (the --quick U-Net of ddpm_mnist)
    # the train steps' compute dtype, for every family (train_step, scaling): "float32", or "bfloat16"
    # (mixed precision, `genjax.train.mixed_precision`: the network in bfloat16, float32 master
    # weights, gradients, optimizer and loss); train_step names then end in /bf16
    dtype: str = "float32"
    bf16: bool = True  # with dtype float32, also train_step/vae_mlp/*/bf16
    repeats: int = 7  # timed repetitions per benchmark (>= 5)
    warmup: int = 1  # untimed repetitions after the first call
    min_rep_s: float = 0.1  # the shortest timed repetition (more calls per repetition if needed)
    peak_matmul_size: int = 2048  # CPU: n of the float32 matmul that measures the peak
    seed: int = 0  # inputs (timings do not depend on their values)

    def __post_init__(self):
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if self.repeats < MIN_REPEATS:
            raise ValueError(f"repeats must be >= {MIN_REPEATS}, got {self.repeats}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not self.min_rep_s >= 0:
            raise ValueError(f"min_rep_s must be >= 0 seconds, got {self.min_rep_s}")
        from genjax.train import compute_dtype

        compute_dtype(self.dtype, "dtype")
        if self.ddpm_model not in ("default", "quick"):
            raise ValueError(f"ddpm_model must be 'default' or 'quick', got {self.ddpm_model!r}")
        for name in ("seeds", "pmap_devices"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive ints, got {getattr(self, name)}")
        for name in ("event_size", "train_batch_size", "fused_steps", "heavy_fused_steps", "peak_matmul_size",
                     "ddpm_batch_size", "sample_timesteps", "sample_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


QUICK: dict[str, Any] = {
    "batch_sizes": (256,), "fused_steps": 5, "heavy_fused_steps": 2, "repeats": 5, "min_rep_s": 0.05,
    "ddpm_model": "quick",
    "ddpm_batch_size": 16, "seeds": (1, 4, 16), "vmap_families": ("vae_mlp",), "pmap_devices": (1, 2),
    "sample_timesteps": 200, "sample_batch": 4,
}


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


def _forward_or_grad(f, argnums, mode: str):
    """`forward`: f itself (a fresh function, so each benchmark compiles its own); `grad`:
    `jax.value_and_grad` of the sum of f's per-example values with respect to `argnums`."""
    import jax
    import jax.numpy as jnp

    if mode == "forward":
        return lambda *a: f(*a)
    return jax.value_and_grad(lambda *a: jnp.sum(f(*a)), argnums=argnums)


def _divergence_benchmark(config: Config, name: str, mode: str, batch: int) -> Benchmark:
    kinds, argnums = DIVERGENCE_ARGS[name]
    shapes = [_input_shape(k, batch, config.event_size) for k in kinds]

    def setup() -> Case:
        import jax

        from genjax import divergences

        f = getattr(divergences, name)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), batch), len(kinds))
        args = tuple(_make_input(k, key, s) for k, key, s in zip(kinds, keys, shapes))
        return Case(fn=_forward_or_grad(f, argnums, mode), args=args, examples_per_call=batch)

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


# ------------------------------------------------------------------------------------- losses


def _loss_benchmark(config: Config, name: str, mode: str, batch: int) -> Benchmark:
    def setup() -> Case:
        import jax

        from benchmarks._losses import LOSSES

        key = jax.random.fold_in(jax.random.key(config.seed), batch)
        f, args, argnums = LOSSES[name](batch, config.event_size, key)
        return Case(fn=_forward_or_grad(f, argnums, mode), args=args, examples_per_call=batch)

    module, function = name.split(".", 1)
    return Benchmark(
        name=f"losses/{name}/{mode}/b{batch}",
        setup=setup,
        config={"suite": "losses", "function": f"genjax.{module}.{function.split('[')[0]}", "variant": name,
                "mode": mode, "batch": batch, "event_size": config.event_size, "dtype": "float32"},
    )


def loss_benchmarks(config: Config) -> list[Benchmark]:
    from benchmarks._losses import LOSSES

    return [_loss_benchmark(config, name, mode, int(batch))
            for name in LOSSES for mode in ("forward", "grad") for batch in config.batch_sizes]


# --------------------------------------------------------------------------------- train step

HEAVY = ("dcgan", "vqvae", "ddpm_unet", "mnist_classifier")


def _family(config: Config, name: str, dtype: str | None = None):
    """The family `name` at the config's batch sizes, in `dtype` (default: `config.dtype`)."""
    from benchmarks import _families

    dtype = dtype or config.dtype
    if name == "ddpm_unet":
        return _families.ddpm_unet(config.ddpm_batch_size, quick_model=config.ddpm_model == "quick", dtype=dtype)
    if name in ("vae_mlp", "mnist_classifier"):
        return getattr(_families, name)(config.train_batch_size, dtype=dtype)
    return _families.build_family(name, dtype)


def _steps_per_call(config: Config, family: str) -> int:
    return config.heavy_fused_steps if family in HEAVY else config.fused_steps


def _fresh_state(family, seed: int):
    import jax
    import jax.numpy as jnp

    # own buffers: the timed step donates its state, and a user's init may alias leaves
    return jax.tree.map(jnp.copy, family.init(jax.random.key(seed)))


def _train_step_benchmark(config: Config, family_name: str, mode: str, dtype: str | None = None) -> Benchmark:
    k = _steps_per_call(config, family_name)
    dtype = dtype or config.dtype

    def setup() -> Case:
        import jax

        from genjax import train

        fam = _family(config, family_name, dtype)
        state = _fresh_state(fam, config.seed)
        batches = fam.batches(jax.random.fold_in(jax.random.key(config.seed), 1), k)
        b = fam.batch_size
        if mode == "fused":  # one call = K steps in one lax.scan; the state is donated
            return Case(fn=train.compile_fused(fam.step, "none"), args=(state, batches), donate_argnums=(0,),
                        carry=True, steps_per_call=k, examples_per_call=k * b, loop_trip_count=k)
        single = jax.tree.map(lambda x: x[0], batches)  # the same batch every step
        return Case(fn=jax.jit(fam.step, donate_argnums=0), args=(state, single), donate_argnums=(0,),
                    carry=True, calls_per_rep=k, steps_per_call=1, examples_per_call=b)

    suffix = "" if dtype == "float32" else "/bf16"
    return Benchmark(
        name=f"train_step/{family_name}/{mode}{suffix}",
        setup=setup,
        config={"suite": "train_step", "family": family_name, "mode": mode, "fused_steps": k, "dtype": dtype,
                "timing": ("one call = K steps in one lax.scan" if mode == "fused" else
                           "K jitted single-step calls per repetition, one sync; times per step"),
                "data": "synthetic inputs of the real shapes and dtypes"},
    )


def train_step_benchmarks(config: Config) -> list[Benchmark]:
    from benchmarks._families import FAMILIES

    out = [_train_step_benchmark(config, f, mode) for f in FAMILIES for mode in ("dispatch", "fused")]
    if config.bf16 and config.dtype == "float32":
        out += [_train_step_benchmark(config, "vae_mlp", mode, "bfloat16") for mode in ("dispatch", "fused")]
    return out


# ------------------------------------------------------------------------------------ scaling


def _seeds_benchmark(config: Config, family_name: str, mode: str, replicas: int) -> Benchmark:
    """R replicas with `replica_mode=mode` (paired with one seed alone), or (mode "one") one seed's
    plain fused step."""
    k = _steps_per_call(config, family_name)

    def setup() -> Case:
        import jax
        import jax.numpy as jnp

        from genjax import train

        fam = _family(config, family_name)
        batches = fam.batches(jax.random.fold_in(jax.random.key(config.seed), 1), k)  # shared by replicas
        one = Case(fn=train.compile_fused(fam.step, "none"), args=(_fresh_state(fam, config.seed), batches),
                   donate_argnums=(0,), carry=True, steps_per_call=k, examples_per_call=k * fam.batch_size,
                   loop_trip_count=k)
        if mode == "one":
            return one
        keys = train.seed_keys(range(config.seed, config.seed + replicas))
        state = jax.tree.map(jnp.copy, train.init_replicas(fam.init, keys))
        return Case(fn=train.compile_fused(fam.step, "none", replicas=True, replica_mode=mode), args=(state, batches),
                    donate_argnums=(0,), carry=True, steps_per_call=replicas * k,
                    examples_per_call=replicas * k * fam.batch_size,
                    # "loop" nests the K-step scan in a scan over the R replicas: cost analysis sees one body
                    loop_trip_count=replicas * k if mode == "loop" else k, extra={"replicas": replicas},
                    baseline=one)

    if mode == "one":
        return Benchmark(
            name=f"scaling/one_seed/{family_name}", setup=setup,
            config={"suite": "scaling", "kind": "one_seed", "family": family_name, "fused_steps": k,
                    "dtype": config.dtype,
                    "timing": "one call = K fused steps of one state (no replica axis)"})
    return Benchmark(
        name=f"scaling/{mode}_seeds/{family_name}/r{replicas}",
        setup=setup,
        config={"suite": "scaling", "kind": f"{mode}_seeds", "family": family_name, "replicas": replicas,
                "fused_steps": k, "replica_mode": mode, "dtype": config.dtype,
                "timing": f"one call = K fused steps of R replicas ({mode}); steps = replica-steps; "
                          "repetitions alternate with one seed's fused step (extra.vs_baseline)"},
    )


def _pmap_benchmark(config: Config, family_name: str, devices: int) -> Benchmark:
    k = _steps_per_call(config, family_name)
    name = f"scaling/pmap/{family_name}/d{devices}"

    def setup() -> Case:
        import jax

        from genjax import train

        if jax.local_device_count() < devices:
            raise Skip(f"{devices} devices requested, {jax.local_device_count()} present")
        fam = _family(config, family_name)
        devs = jax.local_devices()[:devices]
        fused = train.fuse_steps(fam.step, axis_name=train.DATA_AXIS)
        compiled = jax.pmap(fused, axis_name=train.DATA_AXIS, donate_argnums=0, devices=devs)
        import jax.numpy as jnp

        # pmap's input layout: a leading device axis (state replicated, batches split)
        state = jax.tree.map(lambda x: jnp.broadcast_to(x, (devices, *x.shape)), _fresh_state(fam, config.seed))
        batches = jax.device_get(fam.batches(jax.random.fold_in(jax.random.key(config.seed), 1), k))  # [K, ...]
        batches = train.local_batch_split(batches, devices, fam.batch_axis + 1)  # [D, K, ...]
        return Case(fn=compiled, args=(state, batches), donate_argnums=(0,), carry=True, steps_per_call=k,
                    examples_per_call=k * fam.batch_size, loop_trip_count=k, extra={"devices": devices})

    def run_elsewhere(*, repeats, warmup, peak_flops):
        import jax

        if jax.local_device_count() >= devices or jax.default_backend() != "cpu":
            return run_benchmark(dataclasses.replace(bench, run=None), repeats=repeats, warmup=warmup,
                                 peak_flops=peak_flops, min_rep_s=config.min_rep_s)
        return _run_in_subprocess(name, devices, config, repeats=repeats, warmup=warmup, peak_flops=peak_flops)

    bench = Benchmark(
        name=name, setup=setup, run=run_elsewhere,
        config={"suite": "scaling", "kind": "pmap", "family": family_name, "devices": devices, "fused_steps": k,
                "dtype": config.dtype,
                "timing": "one call = K fused steps, the global batch split over D devices (pmap)"},
    )
    return bench


def _run_in_subprocess(name: str, devices: int, config: Config, *, repeats, warmup, peak_flops):
    """Runs one benchmark in `python -m benchmarks` with `devices` virtual CPU devices."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from benchmarks._harness import Result

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = dict(os.environ)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
        env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, "-m", "benchmarks", "--only", name, "--json", out, "--repeats", str(repeats),
               "--warmup", str(warmup), "--min-rep-time", repr(float(config.min_rep_s)),
               "--fused-steps", str(config.fused_steps),
               "--heavy-fused-steps", str(config.heavy_fused_steps), "--train-batch-size", str(config.train_batch_size),
               "--dtype", config.dtype]
        if peak_flops:
            cmd += ["--peak-flops", repr(float(peak_flops))]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"the subprocess for {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(out) as f:
            doc = json.load(f)
    if doc["failures"]:
        raise RuntimeError(doc["failures"][0]["error"])
    if not doc["results"]:
        raise Skip(doc.get("skipped", [{}])[0].get("reason", "skipped in the subprocess"))
    fields = {f.name for f in dataclasses.fields(Result)}
    result = Result(**{k: v for k, v in doc["results"][0].items() if k in fields})
    result.config["subprocess"] = f"XLA_FLAGS=--xla_force_host_platform_device_count={devices}"
    return result


def scaling_benchmarks(config: Config) -> list[Benchmark]:
    out = []
    for f in config.vmap_families:
        out.append(_seeds_benchmark(config, f, "one", 1))
        out += [_seeds_benchmark(config, f, mode, r) for mode in ("vmap", "loop") for r in config.seeds]
    out += [_pmap_benchmark(config, f, d) for f in config.pmap_families for d in config.pmap_devices]
    return out


# ----------------------------------------------------------------------------------- sampling


def _sampling_benchmark(config: Config, mode: str) -> Benchmark:
    t_steps, b = config.sample_timesteps, config.sample_batch

    def setup() -> Case:
        import jax
        import jax.numpy as jnp

        from experiments import ddpm_mnist
        from genjax import diffusion
        from genjax.nn import UNet

        q = ddpm_mnist.QUICK
        model = UNet(channels=q["channels"], num_res_blocks=q["num_res_blocks"], attention=q["attention"])
        schedule = diffusion.make_schedule(diffusion.linear_beta_schedule(t_steps))  # ddpm_mnist's default betas
        shape = (b, *_IMAGE_SHAPE)
        params = jax.jit(model.init)(jax.random.key(config.seed), jnp.zeros((1, *_IMAGE_SHAPE)),
                                     jnp.zeros((1,), jnp.int32))
        key = jax.random.key(config.seed + 1)
        common = dict(examples_per_call=b, extra={"timesteps": t_steps})
        if mode == "scan":

            def sample(params, key):
                return diffusion.sample(key, lambda x, t: model.apply(params, x, t), schedule, shape)

            return Case(fn=sample, args=(params, key), loop_trip_count=t_steps, **common)

        @jax.jit
        def denoise_step(params, x, t, key):  # one reverse step, as a PyTorch sampler runs it
            eps = model.apply(params, x, jnp.full((b,), t, jnp.int32))
            return diffusion.ddpm_step(jax.random.fold_in(key, t), schedule, eps, x, t)

        def loop(params, key):
            init_key, step_key = jax.random.split(key)
            x = jax.random.normal(init_key, shape, jnp.float32)
            for t in range(t_steps - 1, -1, -1):
                x = denoise_step(params, x, t, step_key)
            return x

        x0 = jnp.zeros(shape, jnp.float32)
        return Case(fn=loop, args=(params, key), jit=False, loop_trip_count=t_steps,
                    analysis=(denoise_step, (params, x0, 0, key)), **common)

    return Benchmark(
        name=f"sampling/ddpm/{mode}",
        setup=setup,
        config={"suite": "sampling", "mode": mode, "timesteps": t_steps, "batch": b,
                "model": "experiments.ddpm_mnist --quick U-Net", "timing": (
                    "genjax.diffusion.sample: T steps in one lax.scan" if mode == "scan" else
                    "a Python loop of T calls of a jitted denoise-and-step function, one sync")},
    )


def sampling_benchmarks(config: Config) -> list[Benchmark]:
    return [_sampling_benchmark(config, mode) for mode in ("scan", "loop")]


# ------------------------------------------------------------------------------------ pytorch


def _torch_benchmark(config: Config, threads: int | None) -> Benchmark:
    k = config.fused_steps

    def setup() -> Case:
        try:
            import torch
        except ImportError:
            raise Skip("torch is not importable (optional: pip install torch to compare)") from None
        import jax

        from benchmarks._torch_vae import make_torch_step

        if threads is not None:
            torch.set_num_threads(threads)
        step, args = make_torch_step(config.train_batch_size, config.seed)
        fam = _family(config, "vae_mlp", "float32")  # FLOPs: the same step's count in JAX
        state = _fresh_state(fam, config.seed)
        batch = jax.tree.map(lambda x: x[0], fam.batches(jax.random.key(config.seed), 1))
        return Case(fn=step, args=args, jit=False, calls_per_rep=k, steps_per_call=1,
                    examples_per_call=config.train_batch_size, sync=lambda out: out,
                    analysis=(fam.step, (state, batch)),
                    extra={"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()})

    return Benchmark(
        name="torch/vae_mlp/eager" + ("" if threads is None else f"_{threads}thread"),
        setup=setup,
        config={"suite": "torch", "family": "vae_mlp", "mode": "eager", "fused_steps": k,
                "threads": threads or "pytorch default",
                "model": "pytorch/examples vae/main.py VAE (784-400-20), Adam(1e-3), summed BCE + KLD",
                "timing": "K eager steps per repetition (CPU, synchronous); compile and FLOPs: the JAX step's"},
    )


# torch/<family>/eager for the convolutional families: the family's argument of its PyTorch twin
# (benchmarks._torch_convnets), so that both run the same model at the same size
def _torch_twin_kwargs(config: Config, family: str) -> dict[str, Any]:
    if family == "dcgan":
        from experiments import gan_mnist as exp

        c = exp.Config()
        return dict(batch_size=c.batch_size, latent_dim=c.latent_dim, width=c.width, feature_dim=c.feature_dim,
                    kernel_size=c.generator_kernel, learning_rate=c.learning_rate)
    if family == "vqvae":
        from experiments import vqvae as exp

        c = exp.Config()
        return dict(batch_size=c.batch_size, channels=tuple(c.channels), latent_dim=c.latent_dim,
                    num_codes=c.num_codes, res_hidden=c.res_hidden, beta=c.main_beta, data_variance=0.1,
                    learning_rate=c.learning_rate, decay=c.decay, epsilon=c.epsilon)
    from experiments import ddpm_mnist as exp

    model = {k: exp.QUICK[k] for k in ("channels", "num_res_blocks", "attention")} if config.ddpm_model == "quick" else {}
    c = exp.Config(**model)
    return dict(batch_size=config.ddpm_batch_size, channels=tuple(c.channels), num_res_blocks=c.num_res_blocks,
                time_dim=c.time_dim, attention=c.attention, num_timesteps=c.num_timesteps,
                learning_rate=c.learning_rate, grad_clip=c.grad_clip, ema_decay=c.ema_decay)


TORCH_CONV_FAMILIES = ("dcgan", "vqvae", "ddpm_unet")


def _torch_conv_benchmark(config: Config, family: str, one_thread: bool) -> Benchmark:
    k = _steps_per_call(config, family)

    def setup() -> Case:
        try:
            import torch
        except ImportError:
            raise Skip("torch is not importable (optional: pip install torch to compare)") from None
        import os

        import jax

        from benchmarks._torch_convnets import STEPS
        from genjax import train

        torch.set_num_threads(1 if one_thread else (os.cpu_count() or 1))
        kwargs = _torch_twin_kwargs(config, family)
        fam = _family(config, family, "float32")  # the twins are float32
        if fam.batch_size != kwargs["batch_size"]:
            raise RuntimeError(f"{family}: the PyTorch twin's batch {kwargs['batch_size']} is not the JAX "
                               f"step's {fam.batch_size}")
        step, args = STEPS[family](seed=config.seed, **kwargs)
        state = _fresh_state(fam, config.seed)
        batches = fam.batches(jax.random.fold_in(jax.random.key(config.seed), 1), k)
        one = jax.tree.map(lambda x: x[0], batches)
        jax_fused = Case(fn=train.compile_fused(fam.step, "none"), args=(_fresh_state(fam, config.seed), batches),
                         donate_argnums=(0,), carry=True, steps_per_call=k, examples_per_call=k * fam.batch_size)
        return Case(fn=step, args=args, jit=False, steps_per_call=1, examples_per_call=fam.batch_size,
                    sync=lambda out: out, analysis=(fam.step, (state, one)), baseline=jax_fused,
                    extra={"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()})

    return Benchmark(
        name=f"torch/{family}/eager" + ("_1thread" if one_thread else ""),
        setup=setup,
        config={"suite": "torch", "family": family, "mode": "eager", "fused_steps": k,
                "threads": 1 if one_thread else "the machine's cores",
                "model": f"benchmarks._torch_convnets: the {family} family's networks, batch, optimizer and "
                         "update in PyTorch (channels first)",
                "timing": "one eager step per call (CPU, synchronous), repetitions alternating with the JAX "
                          "fused step's (train_step/<family>/fused; extra.vs_baseline = torch steps/s / JAX's, "
                          "extra.vs_baseline_cpu the same in CPU time); compile and FLOPs: the JAX step's"},
    )


# ------------------------------------------------------------------------------------- import


def _import_benchmark(config: Config) -> Benchmark:
    name = "import/genjax"

    def run(*, repeats, warmup, peak_flops):
        import subprocess
        import sys

        from benchmarks._harness import make_result

        code = "import time; t = time.perf_counter(); import genjax; print(time.perf_counter() - t)"
        times = []
        for i in range(warmup + repeats):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            if i >= warmup:
                times.append(float(proc.stdout.strip().splitlines()[-1]))
        return make_result(bench, Case(fn=None, args=()), times, compile_s=None, first_call_s=None,
                           repeats=repeats, warmup=warmup, peak_flops=None)

    bench = Benchmark(name=name, setup=lambda: None, run=run,
                      config={"suite": "import", "timing": "`import genjax` in a fresh interpreter, per process"})
    return bench


_IMAGE_SHAPE = (28, 28, 1)


def all_benchmarks(config: Config) -> list[Benchmark]:
    """Every benchmark, in run order (cheap: inputs are built only when one runs)."""
    return ([_import_benchmark(config)] + divergence_benchmarks(config) + loss_benchmarks(config)
            + train_step_benchmarks(config) + scaling_benchmarks(config) + sampling_benchmarks(config)
            + [_torch_benchmark(config, None), _torch_benchmark(config, 1)]
            + [_torch_conv_benchmark(config, f, one) for f in TORCH_CONV_FAMILIES for one in (False, True)])
