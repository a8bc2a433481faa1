"""Backend-specific code paths in one place: the XLA:CPU workarounds, what each is for, its switch.

Each numerical workaround is a pair of functions with the same inputs and outputs: the CPU path,
and the plain path (the textbook JAX expression). `select(name, cpu, plain)` returns a function
that stages both into the program with `jax.lax.platform_dependent`, so the choice is made when
the program is *lowered* for a platform, not when it is traced: a program lowered or exported for
`tpu` or `cuda` from a CPU host (`jax.export.export(f, platforms=("cuda",))`) contains only the
plain path; one exported for several platforms holds both, behind a conditional on the platform
that is resolved before XLA compiles it (so XLA never sees the conditional); on CPU the lowered
program is the CPU path alone (for the training steps' gradients, the same optimized HLO as when
it was chosen with `jax.default_backend() == "cpu"` at trace time). Every path supports forward
and reverse mode.
(Under reverse mode each branch of the `switch` also returns the other branches' residuals,
filled with zeros; XLA removes them once the conditional is resolved.)

Off switches, for comparison: the environment variable ``GENJAX_DISABLE_CPU_WORKAROUNDS`` (a
comma-separated list of the names below, or ``all``), or, in a program, the context manager
``genjax._backend.disabled(*names)``. A disabled workaround takes the plain path on every
platform. The switch is read when a function is traced and `jax.jit` caches traces, so set the
variable before the process starts; `disabled` clears JAX's caches on entry and exit.

The table: name (where) / what it works around / measured with / how to check it is still
needed / the plain path.

``conv_grad`` (`genjax.nn.conv2d`, nn/_conv.py; every `genjax.nn.Conv`)
    Works around: XLA:CPU runs the weight gradient that autodiff emits for a convolution (a
    conv contracting over the batch axis) 35-40x slower inside a `lax.scan`/`while` body than
    at top level, and the input gradient (a transposed conv) ~100x slower, which made fused
    training steps several times slower than per-step dispatch. The CPU path is a primitive with
    the convolution's own forward pass, a bilinear JVP (so `jvp`, `jacfwd`, `linearize` and
    higher orders work) and a transpose written as ordinary NHWC/HWIO convolutions, which take
    the same time in a loop as outside.
    Measured: jax 0.10.2, 2-core AMD EPYC VM; a 3x3, 32->64 channel conv on a [64, 14, 14, 32]
    batch: 7 ms per call, 250-340 ms per scan iteration; U-Net input gradient 4.5 vs 500 ms.
    Re-measured 2026-12-03 (jax 0.10.2, idle 2-core VM, peak 330-350 GFLOP/s; ``python -m
    benchmarks --quick --only train_step/dcgan,train_step/ddpm_unet``, ms per fused call of
    K = 2 steps, on / off):
    dcgan 62 / 922 (14.8x), ddpm_unet (quick U-Net) 255 / 8,165 (32x); per-step dispatch 32 / 171.
    Check: ``python -m benchmarks --only train_step/dcgan,train_step/ddpm_unet`` with and
    without ``GENJAX_DISABLE_CPU_WORKAROUNDS=conv_grad``; if the fused steps/s no longer drop
    with the switch off, the workaround can go.
    Plain path: `lax.conv_general_dilated` and XLA's autodiff of it.
``conv_wgrad_split`` (the weight gradient of `genjax.nn.conv2d`'s CPU path, nn/_conv.py)
    Works around: XLA:CPU gives every float32 NHWC convolution with more than 16 input or
    output features to YNNPACK, which runs the weight gradient's convolution (its window is
    the whole output grid) 2-5x slower than XLA's own convolution once that grid has 100
    positions or more (at 7x7 YNNPACK is faster). The CPU path cuts that convolution into
    blocks of at most 16 examples and 16 output channels (XLA's own kernel) and sums the batch
    blocks: the same sum in another order, equal up to float32 rounding.
    Measured: jax 0.10.2, 2-core AMD EPYC VM under load; weight gradient inside a `lax.scan`,
    [64, 28, 28, 32] -> 1 channel: 48 vs 9 ms; [64, 14, 14, 64] -> 32: 22 vs 11.5 ms;
    [32, 28, 28, 32] -> 32: 26 vs 14 ms; whole fused steps in the ``train_step`` rows.
    Re-measured 2026-12-03 (jax 0.10.2, idle 2-core VM, peak 330-350 GFLOP/s; ``python -m
    benchmarks --quick --only train_step/dcgan,train_step/ddpm_unet``, ms per fused call of
    K = 2 steps, on / off):
    dcgan 62 / 56, ddpm_unet 255 / 227; repeated with vqvae (fused ms, on / off): with
    ``conv_library`` on, dcgan 60.9 / 57.1, vqvae 38.1 / 40.1, ddpm_unet 240.8 / 214.6; with it off
    (YNNPACK convolutions, as in a plain `jax.jit`) 82.8 / 80.0, 58.0 / 60.4, 305.1 / 335.7. So
    beside ``conv_library`` the split now costs 6% (dcgan) and 11% (U-Net) and gains 5% (vqvae);
    without it, it gains 4-10% for vqvae and the U-Net. Its per-shape rule needs re-tuning.
    Check: ``python -m benchmarks --only train_step/dcgan,train_step/ddpm_unet`` with and
    without ``GENJAX_DISABLE_CPU_WORKAROUNDS=conv_wgrad_split``, or the per-op profile
    (`jax.profiler`): weight-gradient ``ynn_fusion`` ops with a 14x14 or 28x28 window.
    Plain path: the single convolution of ``conv_grad``'s CPU path (off with ``conv_grad``).
``conv_library`` (`genjax._backend.jit`, so `genjax.train.jit`, `compile_fused`, `fit`, the
samplers of `genjax.diffusion`, and the experiments' programs)
    Works around: XLA:CPU hands every float32 convolution with more than 16 input or output
    features to YNNPACK (``xla_cpu_experimental_ynn_fusion_type`` defaults to individual dots,
    individual convolutions and reductions), and at this course's shapes YNNPACK's convolutions
    are slower than XLA's own (Eigen) ones, forward and backward. The CPU path compiles
    genjax's programs with that option minus the convolutions (dots and reductions stay with
    YNNPACK), a per-program compiler option (`jax.jit(compiler_options=...)`), so nothing
    global changes and other JAX code in the process is unaffected.
    Measured: jax 0.10.2, 2-core AMD EPYC VM, idle; ms per fused train step (K = 4) with
    YNNPACK / Eigen convolutions, both compiled in one process and timed alternately: the
    tour's pixel U-Net (ddpm_mnist quick) 277 / 191-205, the latent U-Net 46.3 / 27.8, dcgan
    113 / 92-96, gan_mnist's quick gan+ema 128 / 111 and WGAN-GP 301 / 271, vqvae 64.9 / 58.5,
    mnist_classifier 96 / 85-94 (within noise); the pixel U-Net's forward pass on 500 images
    707 / 449 ms.
    Re-measured 2026-12-03 (jax 0.10.2, idle 2-core VM, peak 330-350 GFLOP/s; ``python -m
    benchmarks --quick --only train_step/dcgan,train_step/ddpm_unet``, ms per fused call of
    K = 2 steps, on / off):
    dcgan 62 / 78 (1.26x), ddpm_unet 255 / 287 (1.12x).
    Check: ``python -m benchmarks --only train_step/dcgan,train_step/ddpm_unet`` with and
    without ``GENJAX_DISABLE_CPU_WORKAROUNDS=conv_library``, or count ``__ynn_fusion`` in
    ``jitted.lower(...).compile().as_text()``.
    Plain path: no compiler option (XLA's default). The option is chosen in Python when a
    program is first called or lowered, from `jax.default_backend()`; a program exported with
    `jax.export` carries no compiler options, so exports for GPU/TPU are unaffected.
``softplus`` (`genjax._numerics.softplus`, `log_sigmoid`, and so every GAN, VAE and
autoencoder loss)
    Works around: `jax.nn.softplus` is `logaddexp(x, 0)` with extra infinity handling, ~4x
    slower on XLA:CPU than ``max(x, 0) + log1p(exp(-|x|))`` with a JVP reusing the exp.
    Measured: jax 0.10.2, same machine; [128, 784] float32 (a VAE step's Bernoulli
    log-likelihood): 68 vs 283 us forward, 65 vs 288 us with the gradient.
    Re-measured 2026-12-03 (``python -m benchmarks --quick --only losses/``, [256, 784], on /
    off): the Bernoulli reconstruction loss 0.46 / 0.48 ms forward (no longer a gain), 0.45 /
    0.72 ms with the gradient (1.6x); `vae.elbo` (Bernoulli) with the gradient 0.46 / 0.70 ms.
    Check: ``python -m benchmarks --only losses/`` with and without the switch ``softplus``.
    Plain path: `jax.nn.softplus`, `jax.nn.log_sigmoid`.
``abs_grad`` (`MinibatchDiscrimination`, nn/_gan.py)
    Works around: the derivative of `jnp.abs`, `sign(x)` (a compare and select), ran ~15x
    slower on XLA:CPU than `x / max(|x|, tiny)` over the [B, B, K, C] pairwise differences.
    Measured: jax 0.10.x, same machine (commit 2293392). Check: the ``train_step/gan_grid``
    benchmark with a minibatch discriminator, with and without ``abs_grad``.
    Plain path: `jnp.abs`.
``minibatch_layout`` (`MinibatchDiscrimination`, nn/_gan.py)
    Works around: reducing a [B, B, K, C] array of pairwise L1 distances ran ~3x slower on
    XLA:CPU than the kernel-major [K, B, B] form with the sum over C unrolled. Measured: as
    ``abs_grad``. Check: as ``abs_grad``. Plain path: the [B, B, K, C] reduction.
``replica_loop`` (`genjax.train.compile_fused` / `fit` with ``replica_mode="auto"``)
    Works around: a vmapped step over many replicas streams all their parameters, gradients
    and Adam moments through DRAM on CPU (16 vae_mlp replicas: 166 MB, one: 10 MB, inside the
    32 MB L3): 0.70x the throughput of one seed alone, 1.02x when the replicas run one after
    another inside the program ("loop"). Measured: jax 0.10.2, same machine. Check: the
    ``scaling/vmap_seeds`` vs ``scaling/loop_seeds`` benchmark rows. Plain path: "vmap".

Not numerical kernels, so not chosen by `platform_dependent`:

* ``replica_loop`` chooses the *structure* of the program (a loop over replicas or a vmapped
  batch of them) in Python, from `jax.default_backend()` when the step is built
  (`auto_replica_mode`). `platform_dependent` picks among traced alternatives at lowering; it
  cannot change Python-level structure (which transformation wraps the step, donation, what is
  static), so this choice is made at trace time. To export a replicated step for GPU/TPU from a
  CPU host, pass ``replica_mode="vmap"`` explicitly. The switch makes "auto" mean "vmap" on CPU.
* One replica under ``replica_mode="vmap"`` runs the plain step on the squeezed state
  (`genjax.train.vmap_replicas`): XLA:CPU compiled a size-1 batch axis into transposed layouts
  and extra copies (0.82x the plain step for vae_mlp, jax 0.10.2). It is the same computation on
  every backend, so it is applied everywhere and has no switch.
* `genjax._numerics.flatten_trailing` reshapes [B, 28, 28, 1] events to [B, 784] before an
  elementwise-and-reduce (XLA:CPU: 3.8 ms vs 0.2 ms for the Bernoulli log-likelihood at B = 128,
  jax 0.10.2). It changes the static shape its callers reduce over, which both branches of a
  `platform_dependent` must share, and a row-major reshape is a free bitcast in XLA, so it is
  applied on every backend and has no switch.
* On CPU `genjax.train.initialize_distributed` selects the gloo collectives
  (`cpu_collectives`): without them processes cannot all-reduce over TCP. A requirement, not a
  speed-up; no switch.
* `genjax.report.TensorBoardWriter` encodes TensorBoard event files by hand (the TFRecord
  framing, CRC-32C and the few `Event`/`Summary` protobuf fields of a scalar). The libraries
  that write them either need TensorFlow (`tf.summary`, `flax.metrics.tensorboard`, clu) or add
  protobuf and, for the `tensorboard` package, its server's dependencies (grpcio, werkzeug,
  markdown) to the runtime for ~60 lines of encoding; the tests read the files back with the
  real `tensorboard` reader (a test extra), which checks the encoder. Not backend-specific.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Iterator, TypeVar

import jax

__all__ = ["ENV_VAR", "WORKAROUNDS", "auto_replica_mode", "compiler_options", "cpu_collectives", "disabled",
           "enabled", "jit", "select"]

ENV_VAR = "GENJAX_DISABLE_CPU_WORKAROUNDS"
WORKAROUNDS = ("conv_grad", "conv_wgrad_split", "conv_library", "softplus", "abs_grad", "minibatch_layout", "replica_loop")

_F = TypeVar("_F", bound=Callable)
_disabled_here: list[frozenset[str]] = []  # the stack of `disabled(...)` contexts


def _check_names(names, where: str) -> frozenset[str]:
    unknown = sorted(set(names) - set(WORKAROUNDS) - {"all"})
    if unknown:
        raise ValueError(f"{where}: unknown CPU workaround name(s) {unknown}; expected some of "
                         f"{list(WORKAROUNDS)} or 'all'")
    return frozenset(WORKAROUNDS) if "all" in names else frozenset(names)


def _from_env() -> frozenset[str]:
    raw = os.environ.get(ENV_VAR, "")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return _check_names(names, f"environment variable {ENV_VAR}={raw!r}")


def enabled(name: str) -> bool:
    """Whether the workaround `name` is on (neither named in ``GENJAX_DISABLE_CPU_WORKAROUNDS``
    nor inside `disabled(name)`). Read at trace time."""
    if name not in WORKAROUNDS:
        raise ValueError(f"name must be one of {list(WORKAROUNDS)}, got {name!r}")
    return name not in _from_env() and not any(name in d for d in _disabled_here)


@contextlib.contextmanager
def disabled(*names: str) -> Iterator[None]:
    """Within the block, the named workarounds (or ``"all"``) take the plain path on every
    platform. JAX's trace and compilation caches are cleared on entry and exit
    (`jax.clear_caches`), so a jitted function called in the block is traced again and a
    function first called in it is not reused outside; for comparisons and tests."""
    _disabled_here.append(_check_names(names, "disabled()"))
    jax.clear_caches()
    try:
        yield
    finally:
        _disabled_here.pop()
        jax.clear_caches()


def select(name: str, cpu: _F, plain: _F) -> _F:
    """`cpu` on CPU and `plain` on every other platform, chosen at lowering
    (`jax.lax.platform_dependent`); `plain` everywhere when `name` is disabled.

    `cpu` and `plain` take the same array arguments and return the same shapes and dtypes; both
    are traced (so both must be traceable for the given inputs)."""
    if not enabled(name):
        return plain

    def chosen(*args):
        return jax.lax.platform_dependent(*args, cpu=cpu, default=plain)

    return chosen  # type: ignore[return-value]


def auto_replica_mode() -> str:
    """What `replica_mode="auto"` means for a step built now: "loop" on CPU (unless
    ``replica_loop`` is disabled), "vmap" elsewhere. Decided in Python from
    `jax.default_backend()` (program structure, not a kernel; see the module docstring)."""
    return "loop" if jax.default_backend() == "cpu" and enabled("replica_loop") else "vmap"


def cpu_collectives() -> None:
    """Selects the gloo cross-process collectives when this process runs JAX on CPU (before
    `jax.distributed.initialize`); needed for all-reduces over TCP between CPU processes."""
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


# ``conv_library``: the default of xla_cpu_experimental_ynn_fusion_type (jax 0.10.2: individual
# dots, individual convolutions, reductions; counted from the compiled HLO's __ynn_fusion ops)
# without the convolutions
_YNN_WITHOUT_CONVS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


try:  # whether no transformation is tracing now (private, so optional)
    from jax._src.core import trace_state_clean as _top_level
except ImportError:  # pragma: no cover
    def _top_level() -> bool:
        return False  # no options rather than an error under a trace


def compiler_options() -> dict[str, str]:
    """The XLA compiler options of genjax's programs for the default backend now: on CPU (with
    ``conv_library`` on) convolutions go to XLA's own kernels instead of YNNPACK; elsewhere none."""
    if jax.default_backend() == "cpu" and enabled("conv_library"):
        return {"xla_cpu_experimental_ynn_fusion_type": _YNN_WITHOUT_CONVS}
    return {}


def jit(fun: Callable | None = None, **jit_kwargs):
    """`jax.jit(fun, **jit_kwargs)` compiled with `compiler_options()` (so with the CPU
    convolution choice of ``conv_library``); usable as a decorator, with or without arguments.

    The options are read when the function is called or lowered, not when it is defined (so
    defining one does not start a backend, and `disabled("conv_library")` applies to calls
    inside it); each set of options gets its own `jax.jit`. `.lower(...)`, `.trace(...)` and
    `.eval_shape(...)` work as on a jitted function. Called under a transformation (inside
    another jit, or under `grad`/`vmap`) it is the plain `jax.jit`, since JAX accepts compiler
    options only on a top-level jit: inlined into an outer jit, it gets that program's options."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    if "compiler_options" in jit_kwargs:
        raise TypeError("jit: compiler_options are chosen by genjax._backend.compiler_options(); use jax.jit "
                        "to pass your own")
    compiled: dict[tuple, Callable] = {}

    def current():
        # `jax.jit` takes compiler options only at top level: under a trace (an outer jit, grad,
        # vmap) the plain jit, which the outer program inlines or compiles with its own options
        options = compiler_options() if _top_level() else {}
        key = tuple(sorted(options.items()))
        if key not in compiled:
            compiled[key] = jax.jit(fun, compiler_options=options or None, **jit_kwargs)
        return compiled[key]

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        return current()(*args, **kwargs)

    wrapped.lower = lambda *a, **k: current().lower(*a, **k)
    wrapped.trace = lambda *a, **k: current().trace(*a, **k)
    wrapped.eval_shape = lambda *a, **k: current().eval_shape(*a, **k)
    # the compilations so far, over every set of options (as `jax.jit`'s private counter, which tests use)
    wrapped._cache_size = lambda: sum(f._cache_size() for f in compiled.values())
    return wrapped
